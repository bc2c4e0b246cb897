"""``lstm-interp steer MODEL --prompt TEXT --clamp SPEC=VALUE ...``: what an intervention does to generated text."""

from __future__ import annotations

import argparse

from lstm_interp.cli._arguments import (
    MAX_LENGTH,
    add_model_argument,
    add_options,
    add_output_options,
    check_features,
    check_sampled_length,
    positive_int,
    temperature,
    unit_spec,
)

UNKNOWN_CHAR_HINT = "Use only characters the model knows in --prompt."


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Generate pairs of samples with and without interventions on units (same seed per pair) and compare "
            "the quote rate, the mean line length and feature means of the generated text."
        ),
        epilog=(
            "Example: lstm-interp steer novel --prompt 'He said ' --clamp layers.1.cell:254=3 --samples 20 "
            "--length 300 --out steer_quote. Units are given as LAYER[.QUANTITY]:UNITS[=VALUE], such as "
            "'layers.1:254' or 'layers.1.cell:254,255=2.5'; without a quantity, the layer's state (cell of an LSTM, "
            "hidden of a GRU or RNN)."
        ),
    )
    add_model_argument(parser)
    add = parser.add_argument
    add("--prompt", required=True, help="the text every sample starts from")
    add("--clamp", type=unit_spec, action="append", default=[], metavar="SPEC=VALUE", help="set units to VALUE")
    add("--ablate", type=unit_spec, action="append", default=[], metavar="SPEC", help="set units to zero")
    add("--scale", type=unit_spec, action="append", default=[], metavar="SPEC=FACTOR", help="multiply units by FACTOR")
    add("--from-prompt", action="store_true",
        help="act from the prompt's first character too (default: on the sampled characters only)")  # fmt: skip
    add_options(
        parser,
        ("--samples", positive_int, 20, "N", "sample pairs"),
        ("--length", positive_int, 300, "N", "characters per sample"),
        ("--max-length", positive_int, MAX_LENGTH, "N", "the most characters sampled in all, 2 x --samples x "
         "--length; raise it for a longer run"),
        ("--temperature", temperature, 1.0, "T", "softmax temperature"),
        ("--top-k", positive_int, None, "K", "sample among the K most likely"),
        ("--seed", int, 0, "S", "pair i is sampled with seed S + i"),
    )  # fmt: skip
    add("--features", nargs="+", default=[], metavar="NAME", help="features whose mean over the samples to compare")
    add_output_options(parser, "an earlier run")
    return parser


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not (args.clamp or args.ablate or args.scale):
        parser.error("give at least one intervention: --clamp SPEC=VALUE, --ablate SPEC or --scale SPEC=FACTOR")
    if args.prompt == "":
        parser.error("argument --prompt: must not be empty, got ''")
    # Both arms of every pair are sampled: the cap of `sample`, on all the characters the run draws.
    check_sampled_length(
        parser, "--samples/--length", 2 * args.samples * args.length, args.max_length,
        unit="characters sampled in all", shown=f"2 arms x {args.samples} sample pairs x {args.length} characters",
    )  # fmt: skip
    from lstm_interp.interventions.intervention_rules import InterventionError
    from lstm_interp.interventions.unit_specs import check_unit_spec

    for op in ("clamp", "ablate", "scale"):
        for spec in getattr(args, op):
            try:
                check_unit_spec(op, spec, label=f"--{op}")
            except InterventionError as err:
                parser.error(f"argument --{op}: {err}")
    features = check_features(parser, args.features, "--features")
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.report.experiment_folder import check_experiment_folder
    from lstm_interp.report.experiment_runs import STEER_KIND, run_steer

    check_experiment_folder(args.out, STEER_KIND, overwrite=args.overwrite)  # before the model is opened
    result = run_steer(
        load_pretrained(args.model), args.prompt, args.out, clamp=args.clamp, ablate=args.ablate, scale=args.scale,
        from_prompt=args.from_prompt, n_samples=args.samples, length=args.length, temperature=args.temperature,
        top_k=args.top_k, seed=args.seed, features=features, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"{result.to_markdown()}\nwrote {args.out}")
    return 0
