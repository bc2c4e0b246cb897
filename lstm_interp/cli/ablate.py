"""``lstm-interp ablate MODEL TEXT_FILE --unit layers.1:254 --target '"'``: does the model use these units?

Parses the command line and calls :func:`~lstm_interp.report.experiment_runs.run_ablation`; prints the table.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_model_argument,
    add_overwrite_argument,
    check_model_argument,
    positive_int,
    read_text_file,
    unit_spec,
)


def build_parser(prog: str = "lstm-interp ablate") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp ablate``."""
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
    parser.add_argument("text_file", type=Path, metavar="TEXT_FILE", help="the UTF-8 text the loss is measured on")
    parser.add_argument(
        "--unit", dest="units", type=unit_spec, action="append", required=True, metavar="LAYER[.QUANTITY]:UNITS",
        help="units to ablate, each on its own: layers.1:254 (the state: cell of an LSTM), layers.0.hidden:3,7; "
        "repeatable",
    )  # fmt: skip
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target", metavar="CHARS", help="predicted characters that are targets: '\"', '}', '\\n'")
    target.add_argument("--target-feature", metavar="NAME", help="targets where a registered feature is on")
    parser.add_argument("--mean", action="store_true", help="ablate to the unit's mean over the text, not to zero")
    parser.add_argument("--random", type=positive_int, default=100, metavar="N", help="random units (100)")
    parser.add_argument("--together-feature", metavar="NAME", help="also ablate the top --k units of this feature")
    parser.add_argument("--k", type=positive_int, default=5, help="units ablated together (5)")
    parser.add_argument("--chars", type=positive_int, default=None, metavar="N", help="use the first N characters")
    parser.add_argument("--seed", type=int, default=0, help="random units and bootstrap (0)")
    parser.add_argument("--out", "-o", type=Path, default=Path("lstm_interp_ablation"), metavar="DIR",
                        help="the folder to write (default: lstm_interp_ablation)")  # fmt: skip
    add_overwrite_argument(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp ablate") -> int:
    """Run ``lstm-interp ablate`` with ``argv``; returns the exit status (bad arguments exit with 2, argparse).

    Raises:
        FileNotFoundError, ValueError: a broken model, text outside the vocabulary, units the model lacks, no
            target position (the CLI prints them in one line, status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
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
