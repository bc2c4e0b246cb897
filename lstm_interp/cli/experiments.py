"""``lstm-interp ablate``, ``steer`` and ``probe``: the experiments of :mod:`lstm_interp.report.experiment_runs`.

Each refuses bad flags before the model is opened, then ``run_ablation``, ``run_steer`` or ``run_probes`` writes
the folder ``--out`` with its ``manifest.json``.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from lstm_interp.cli._arguments import (
    MAX_LENGTH,
    add_corpus_pass_options,
    add_options,
    add_output_options,
    check_sampled_length,
    command_parser,
    corpus_pass_arguments,
    existing_file,
    feature_name,
    non_empty,
    number_type,
    positive_float,
    positive_int,
    read_text_file,
    temperature,
    unit_spec,
)

DEFAULT_MAX_ROWS = 50_000  # lstm_interp.analysis.probe.DEFAULT_MAX_ROWS, without importing the analysis for --help
_share = number_type(float, "a share between 0 and 1", lambda value: 0 < value < 1)
_l1_ratio = number_type(float, "in (0, 1] (1 is the lasso)", lambda value: 0 < value <= 1)


def ablate_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Ablate units (zero or mean) while the model reads a text and measure the change in loss at target "
        "positions and elsewhere, against random units of the same layer (percentiles with bootstrap intervals); "
        "optionally ablate the top-k units of a feature together.",
        "lstm-interp ablate novel chapter.txt --unit layers.1:254 --target '\"' --together-feature inside_quotes "
        "--out quote_cell_ablation",
    )
    add = parser.add_argument
    add("text_file", type=existing_file, metavar="TEXT_FILE", help="the UTF-8 text the loss is measured on")
    add("--unit", dest="units", type=unit_spec, action="append", required=True, metavar="LAYER[.QUANTITY]:UNITS",
        help="units to ablate, each on its own: layers.1:254 (the state: cell of an LSTM), layers.0.hidden:3,7; "
        "repeatable")  # fmt: skip
    add_options(
        parser.add_mutually_exclusive_group(required=True),
        ("--target", non_empty, None, "CHARS", "predicted characters that are targets: '\"', '}', '\\n'"),
        ("--target-feature", feature_name, None, "NAME", "targets where a registered feature is on"),
    )
    add("--mean", action="store_true", help="ablate to the unit's mean over the text, not to zero")
    add_options(
        parser,
        ("--together-feature", feature_name, None, "NAME", "also ablate the top --k units of this feature"),
        ("--random", positive_int, 100, "N", "random units"),
        ("--k", positive_int, 5, "K", "units ablated together"),
        ("--chars", positive_int, None, "N", "use the first N characters"),
        ("--seed", int, 0, "SEED", "random units and bootstrap"),
    )
    add_output_options(parser, "an earlier run", default=Path("lstm_interp_ablation"))
    return parser


def run_ablate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    text = read_text_file(parser, args.text_file, "TEXT_FILE", min_chars=2)[: args.chars]
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.interventions.unit_specs import MixedQuantitiesError, ablation_units
    from lstm_interp.report.experiment_folder import check_experiment_folder
    from lstm_interp.report.experiment_runs import ABLATION_KIND, run_ablation

    check_experiment_folder(args.out, ABLATION_KIND, overwrite=args.overwrite)
    model = load_pretrained(args.model)
    try:
        quantity, units = ablation_units(args.units, model.config.cell)
    except MixedQuantitiesError as err:
        parser.error(f"argument --unit: {err}")
    study = run_ablation(
        model, text, units, f"feature:{args.target_feature}" if args.target_feature else args.target, args.out,
        quantity=quantity, value="mean" if args.mean else "zero", n_random=args.random,
        together_feature=args.together_feature, k=args.k, seed=args.seed, log=print, arguments=vars(args),
        overwrite=args.overwrite,
    )  # fmt: skip
    print(f"{study.to_markdown()}\nWrote {args.out}/{ABLATION_KIND}.json and {ABLATION_KIND}.png")
    return 0


def steer_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Generate pairs of samples with and without interventions on units (same seed per pair) and compare the "
        "quote rate, the mean line length and feature means of the generated text.",
        "lstm-interp steer novel --prompt 'He said ' --clamp layers.1.cell:254=3 --samples 20 --length 300 --out "
        "steer_quote. Units are given as LAYER[.QUANTITY]:UNITS[=VALUE], such as 'layers.1:254' or "
        "'layers.1.cell:254,255=2.5'; without a quantity, the layer's state (cell of an LSTM, hidden of a GRU or RNN).",
    )
    add = parser.add_argument
    add("--prompt", type=non_empty, required=True, help="the text every sample starts from")
    for op, metavar, text in (("clamp", "SPEC=VALUE", "set units to VALUE"), ("ablate", "SPEC", "set units to zero"),
                              ("scale", "SPEC=FACTOR", "multiply units by FACTOR")):  # fmt: skip
        add(f"--{op}", type=partial(unit_spec, op=op), action="append", default=[], metavar=metavar, help=text)
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
        ("--features", feature_name, [], "NAME", "features whose mean over the samples to compare", {"nargs": "+"}),
    )  # fmt: skip
    add_output_options(parser, "an earlier run")
    return parser


def run_steer(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not (args.clamp or args.ablate or args.scale):
        parser.error("give at least one intervention: --clamp SPEC=VALUE, --ablate SPEC or --scale SPEC=FACTOR")
    # Both arms of every pair are sampled: the cap of `sample`, on all the characters the run draws.
    check_sampled_length(
        parser, "--samples/--length", 2 * args.samples * args.length, args.max_length,
        unit="characters sampled in all", shown=f"2 arms x {args.samples} sample pairs x {args.length} characters",
    )  # fmt: skip
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.report import experiment_runs
    from lstm_interp.report.experiment_folder import check_experiment_folder

    check_experiment_folder(args.out, experiment_runs.STEER_KIND, overwrite=args.overwrite)  # before the model
    result = experiment_runs.run_steer(
        load_pretrained(args.model), args.prompt, args.out, clamp=args.clamp, ablate=args.ablate, scale=args.scale,
        from_prompt=args.from_prompt, n_samples=args.samples, length=args.length, temperature=args.temperature,
        top_k=args.top_k, seed=args.seed, features=list(dict.fromkeys(args.features)), overwrite=args.overwrite,
    )  # fmt: skip
    print(f"{result.to_markdown()}\nwrote {args.out}")
    return 0


def probe_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Fit a sparse (elastic-net) probe of each feature on every unit, held out on the text's last part: its "
        "score, the best single unit's, how many top units reach 95% of it, and its selectivity against a control "
        "task (random labels per character); with --causal, ablate each probe's top units together against random "
        "sets of as many units.",
        "lstm-interp probe novel chapter.txt --features inside_quotes position_in_line --causal --out quote_probes",
    )
    add = parser.add_argument
    add("text_file", type=existing_file, metavar="TEXT_FILE", help="the UTF-8 text to probe on")
    add("--features", type=feature_name, nargs="+", required=True, metavar="NAME", help="registered features to probe")
    add("--quantity", default=None, help="the quantity probed (default: the state, cell of an LSTM)")
    add("--layers", nargs="+", default=None, metavar="LAYER", help="layers.1 or 1 (default: all)")
    add("--causal", action="store_true", help="ablate each probe's top --k units against random sets")
    add("--target", type=non_empty, default=None, metavar="CHARS",
        help="--causal targets: predicted characters (default: where the feature is on)")  # fmt: skip
    add_options(
        parser,
        ("--alpha", positive_float, [0.01], "A", "penalty strength; several: chosen on a validation slice",
         {"nargs": "+"}),
        ("--chars", positive_int, None, "N", "use the first N characters"),
        ("--max-rows", positive_int, DEFAULT_MAX_ROWS, "N", "the most positions kept, evenly spaced"),
        ("--heldout", _share, 0.2, "SHARE", "the share of the text held out, at its end"),
        ("--l1-ratio", _l1_ratio, 0.5, "R", "L1 share of the penalty"),
        ("--seed", int, 0, "SEED", "control task, random units and bootstrap"),
        ("--k", positive_int, 5, "K", "top units ablated together"),
        ("--random-sets", positive_int, 100, "N", "random k-sets"),
        ("--random", positive_int, 100, "N", "random single units"),
        ("--causal-chars", positive_int, 10_000, "N", "--causal runs the model --random + --random-sets + --k + 2 "
         "times over the last N characters of the text, in its held-out part"),
    )  # fmt: skip
    add_output_options(parser, "a probe run")
    add_corpus_pass_options(parser, skip_unknown=False)
    return parser


def run_probe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    features = list(dict.fromkeys(args.features))
    text = read_text_file(parser, args.text_file, "TEXT_FILE", min_chars=2)[: args.chars]
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.report.experiment_folder import check_experiment_folder
    from lstm_interp.report.experiment_runs import PROBE_KIND, probe_folder_names, run_probes
    from lstm_interp.tracing.quantities import quantities_of

    check_experiment_folder(args.out, PROBE_KIND, overwrite=args.overwrite, names=probe_folder_names(features))
    model = load_pretrained(args.model, args.revision)
    if args.quantity is not None and args.quantity not in quantities_of(model.config.cell):
        parser.error(
            f"argument --quantity: {args.quantity!r} is not one of the model's: {quantities_of(model.config.cell)}"
        )
    layers = None if args.layers is None else [int(layer) if layer.isdigit() else layer for layer in args.layers]
    written = run_probes(
        model, text, features, args.out, quantity=args.quantity, layers=layers, max_rows=args.max_rows,
        heldout=args.heldout, alpha=args.alpha, l1_ratio=args.l1_ratio, seed=args.seed, causal=args.causal, k=args.k,
        n_random_sets=args.random_sets, n_random=args.random, targets=args.target, causal_chars=args.causal_chars,
        arguments=vars(args), overwrite=args.overwrite, log=print, **corpus_pass_arguments(args),
    )  # fmt: skip
    if written is not None:  # rank 0 of a pass over several processes wrote the folder
        print(f"Wrote {args.out}/{written[0]}, {', '.join(written[1:])} and manifest.json")
    return 0
