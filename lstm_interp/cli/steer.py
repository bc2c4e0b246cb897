"""``lstm-interp steer MODEL --prompt TEXT --clamp SPEC=VALUE ...``: what an intervention does to generated text.

Parses the unit specs (``--clamp``, ``--ablate``, ``--scale``), refuses with status 2 before the model is opened what
:func:`~lstm_interp.interventions.unit_specs.check_unit_spec` refuses and more than ``--max-length`` characters
sampled in all, then calls :func:`~lstm_interp.report.experiment_runs.run_steer`, which writes ``DIR``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import (
    MAX_LENGTH,
    UNIT_SPEC_FORM,
    add_model_argument,
    add_overwrite_argument,
    check_features,
    check_model_argument,
    check_sampled_length,
    positive_int,
    temperature,
    unit_spec,
)


def build_parser(prog: str = "lstm-interp steer") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp steer``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Generate pairs of samples with and without interventions on units (same seed per pair) and compare "
            "the quote rate, the mean line length and feature means of the generated text."
        ),
        epilog=(
            "Example: lstm-interp steer novel --prompt 'He said ' --clamp layers.1.cell:254=3 --samples 20 "
            f"--length 300 --out steer_quote. Units are given as {UNIT_SPEC_FORM}; without a quantity, the layer's "
            "state (cell of an LSTM, hidden of a GRU or RNN)."
        ),
    )
    add_model_argument(parser)
    parser.add_argument("--prompt", required=True, help="the text every sample starts from")
    add = parser.add_argument
    add("--clamp", type=unit_spec, action="append", default=[], metavar="SPEC=VALUE", help="set units to VALUE")
    add("--ablate", type=unit_spec, action="append", default=[], metavar="SPEC", help="set units to zero")
    add("--scale", type=unit_spec, action="append", default=[], metavar="SPEC=FACTOR", help="multiply units by FACTOR")
    add("--from-prompt", action="store_true",
        help="act from the prompt's first character too (default: on the sampled characters only)")  # fmt: skip
    parser.add_argument("--samples", type=positive_int, default=20, metavar="N", help="sample pairs (default 20)")
    parser.add_argument("--length", type=positive_int, default=300, metavar="N", help="characters per sample (300)")
    parser.add_argument(
        "--max-length", type=positive_int, default=MAX_LENGTH, metavar="N",
        help=f"the most characters sampled in all, 2 x --samples x --length (default {MAX_LENGTH:,}); raise it for "
        "a longer run",
    )  # fmt: skip
    parser.add_argument("--temperature", type=temperature, default=1.0, metavar="T", help="softmax temperature (1)")
    parser.add_argument("--top-k", type=positive_int, default=None, metavar="K", help="sample among the K most likely")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="pair i is sampled with seed S + i (0)")
    add("--features", nargs="+", default=[], metavar="NAME", help="features whose mean over the samples to compare")
    parser.add_argument("--out", "-o", type=Path, required=True, metavar="DIR", help="the folder to write")
    add_overwrite_argument(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp steer") -> int:
    """Run ``lstm-interp steer`` with ``argv`` (the arguments after ``steer``); returns the exit status.

    Prints the markdown table of :meth:`~lstm_interp.experiments.SteerResult.to_markdown` and the folder written.

    Raises:
        FileNotFoundError, ValueError: a broken model, a prompt outside its vocabulary, an intervention the model
            cannot take (a unit out of range), an output folder holding other files (the CLI prints them in one
            line, status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
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
    check_model_argument(parser, args.model)
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.report.experiment_folder import check_experiment_folder
    from lstm_interp.report.experiment_runs import STEER_KIND, run_steer

    check_experiment_folder(args.out, STEER_KIND, overwrite=args.overwrite)  # before the model is opened
    result = run_steer(
        load_pretrained(args.model), args.prompt, args.out, clamp=args.clamp, ablate=args.ablate, scale=args.scale,
        from_prompt=args.from_prompt, n_samples=args.samples, length=args.length, temperature=args.temperature,
        top_k=args.top_k, seed=args.seed, features=features, overwrite=args.overwrite,
    )  # fmt: skip
    print(result.to_markdown())
    print(f"wrote {args.out}")
    return 0
