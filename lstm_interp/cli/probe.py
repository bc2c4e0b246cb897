"""``lstm-interp probe MODEL TEXT_FILE --features F1 F2 --out DIR``: how many units does each feature need?

Parses the command line and calls :func:`~lstm_interp.report.experiment_runs.run_probes`, which reads the text's
units once, fits one sparse probe per feature (and with ``--causal`` ablates each probe's top units on the last
``--causal-chars`` characters) and writes ``DIR``: ``probes.json``, a figure per feature and ``manifest.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_model_argument,
    add_overwrite_argument,
    add_trainer_arguments,
    check_features,
    check_model_argument,
    positive_float,
    positive_int,
    read_text_file,
    trainer_arguments,
)

DEFAULT_MAX_ROWS = 50_000  # lstm_interp.analysis.probe.DEFAULT_MAX_ROWS, without importing the analysis for --help


def build_parser(prog: str = "lstm-interp probe") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp probe``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Fit a sparse (elastic-net) probe of each feature on every unit, held out on the text's last part: its "
            "score, the best single unit's, how many top units reach 95% of it, and its selectivity against a "
            "control task (random labels per character); with --causal, ablate each probe's top units together "
            "against random sets of as many units."
        ),
        epilog=(
            "Example: lstm-interp probe novel chapter.txt --features inside_quotes position_in_line --causal "
            "--out quote_probes"
        ),
    )
    add_model_argument(parser)
    parser.add_argument("text_file", type=Path, metavar="TEXT_FILE", help="the UTF-8 text to probe on")
    parser.add_argument("--features", nargs="+", required=True, metavar="NAME", help="registered features to probe")
    parser.add_argument("--quantity", default=None, help="the quantity probed (default: the state, cell of an LSTM)")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER", help="layers.1 or 1 (default: all)")
    parser.add_argument("--chars", type=positive_int, default=None, metavar="N", help="use the first N characters")
    parser.add_argument("--max-rows", type=positive_int, default=DEFAULT_MAX_ROWS, metavar="N",
                        help=f"the most positions kept, evenly spaced ({DEFAULT_MAX_ROWS:,})")  # fmt: skip
    parser.add_argument("--heldout", type=_share, default=0.2, metavar="SHARE",
                        help="the share of the text held out, at its end (0.2)")  # fmt: skip
    parser.add_argument("--alpha", type=positive_float, nargs="+", default=[0.01], metavar="A",
                        help="penalty strength; several: chosen on a validation slice (0.01)")  # fmt: skip
    parser.add_argument("--l1-ratio", type=_l1_ratio, default=0.5, metavar="R", help="L1 share of the penalty (0.5)")
    parser.add_argument("--seed", type=int, default=0, help="control task, random units and bootstrap (0)")
    parser.add_argument("--causal", action="store_true", help="ablate each probe's top --k units against random sets")
    parser.add_argument("--k", type=positive_int, default=5, help="top units ablated together (5)")
    parser.add_argument("--random-sets", type=positive_int, default=100, metavar="N", help="random k-sets (100)")
    parser.add_argument("--random", type=positive_int, default=100, metavar="N", help="random single units (100)")
    parser.add_argument("--target", default=None, metavar="CHARS",
                        help="--causal targets: predicted characters (default: where the feature is on)")  # fmt: skip
    parser.add_argument("--causal-chars", type=positive_int, default=10_000, metavar="N",
                        help="--causal runs the model --random + --random-sets + --k + 2 times over the last N "
                        "characters of the text, in its held-out part (10,000)")  # fmt: skip
    parser.add_argument("--out", "-o", type=Path, required=True, metavar="DIR", help="the folder to write")
    add_overwrite_argument(parser)
    add_trainer_arguments(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp probe") -> int:
    """Run ``lstm-interp probe`` with ``argv``; returns the exit status (bad arguments exit with 2, argparse).

    Raises:
        FileNotFoundError, ValueError: a broken model, text outside the vocabulary, a feature constant on the text
            or on its held-out part, a folder holding foreign files (the CLI prints them in one line, status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    features = check_features(parser, args.features, "--features")
    if args.target == "":
        parser.error("argument --target: give at least one character, got ''")
    text = read_text_file(parser, args.text_file, "TEXT_FILE", min_chars=2)[: args.chars]
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.report.experiment_folder import check_experiment_folder
    from lstm_interp.report.experiment_runs import PROBE_KIND, probe_folder_names, run_probes
    from lstm_interp.tracing.quantities import quantities_of

    check_experiment_folder(args.out, PROBE_KIND, overwrite=args.overwrite, names=probe_folder_names(features))
    model = load_pretrained(args.model)
    if args.quantity is not None and args.quantity not in quantities_of(model.config.cell):
        parser.error(
            f"argument --quantity: {args.quantity!r} is not one of the model's: {quantities_of(model.config.cell)}"
        )
    written = run_probes(
        model, text, features, args.out, quantity=args.quantity, layers=_layers(args.layers), max_rows=args.max_rows,
        heldout=args.heldout, alpha=args.alpha, l1_ratio=args.l1_ratio, seed=args.seed, causal=args.causal, k=args.k,
        n_random_sets=args.random_sets, n_random=args.random, targets=args.target, causal_chars=args.causal_chars,
        arguments=vars(args), overwrite=args.overwrite, log=print, shard_chars=args.shard_chars,
        prime_chars=args.prime_chars, **trainer_arguments(args),
    )  # fmt: skip
    if written is not None:  # rank 0 of a pass over several processes wrote the folder
        print(f"Wrote {args.out}/{written[0]}, {', '.join(written[1:])} and manifest.json")
    return 0


def _layers(given: list[str] | None) -> list[int | str] | None:
    """``--layers`` as the library takes them: indices (``1``) as numbers, names (``layers.1``) as they are."""
    return None if given is None else [int(layer) if layer.isdigit() else layer for layer in given]


def _share(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, got {text!r}")
    return value


def _l1_ratio(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1 is the lasso), got {text!r}")
    return value
