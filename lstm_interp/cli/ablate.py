"""``lstm-interp ablate MODEL TEXT_FILE --unit layers.1:254 --target '"'``: does the model use these units?"""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_model_argument,
    add_options,
    add_output_options,
    positive_int,
    read_text_file,
    unit_spec,
)

UNKNOWN_CHAR_HINT = "Use only characters the model knows in TEXT_FILE: the loss is measured at every one."


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Ablate units (zero or mean) while the model reads a text and measure the change in loss at target "
            "positions and elsewhere, against random units of the same layer (percentiles with bootstrap "
            "intervals); optionally ablate the top-k units of a feature together."
        ),
        epilog=(
            "Example: lstm-interp ablate novel chapter.txt --unit layers.1:254 --target '\"' "
            "--together-feature inside_quotes --out quote_cell_ablation"
        ),
    )
    add_model_argument(parser)
    add = parser.add_argument
    add("text_file", type=Path, metavar="TEXT_FILE", help="the UTF-8 text the loss is measured on")
    add("--unit", dest="units", type=unit_spec, action="append", required=True, metavar="LAYER[.QUANTITY]:UNITS",
        help="units to ablate, each on its own: layers.1:254 (the state: cell of an LSTM), layers.0.hidden:3,7; "
        "repeatable")  # fmt: skip
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target", metavar="CHARS", help="predicted characters that are targets: '\"', '}', '\\n'")
    target.add_argument("--target-feature", metavar="NAME", help="targets where a registered feature is on")
    add("--mean", action="store_true", help="ablate to the unit's mean over the text, not to zero")
    add("--together-feature", metavar="NAME", help="also ablate the top --k units of this feature")
    add_options(
        parser,
        ("--random", positive_int, 100, "N", "random units"),
        ("--k", positive_int, 5, "K", "units ablated together"),
        ("--chars", positive_int, None, "N", "use the first N characters"),
        ("--seed", int, 0, "SEED", "random units and bootstrap"),
    )
    add_output_options(parser, "an earlier run", default=Path("lstm_interp_ablation"))
    return parser


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.target == "":
        parser.error("argument --target: give at least one character, got ''")
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
    targets = f"feature:{args.target_feature}" if args.target_feature else args.target
    study = run_ablation(
        model, text, units, targets, args.out, quantity=quantity, value="mean" if args.mean else "zero",
        n_random=args.random, together_feature=args.together_feature, k=args.k, seed=args.seed, log=print,
        arguments=vars(args), overwrite=args.overwrite,
    )  # fmt: skip
    print(study.to_markdown())
    print(f"Wrote {args.out}/{ABLATION_KIND}.json and {ABLATION_KIND}.png")
    return 0
