"""``lstm-interp probe MODEL TEXT_FILE --features F1 F2 --out DIR``: how many units does each feature need?"""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_corpus_pass_options,
    add_model_argument,
    add_options,
    add_output_options,
    check_features,
    corpus_pass_arguments,
    positive_float,
    positive_int,
    read_text_file,
)

DEFAULT_MAX_ROWS = 50_000  # lstm_interp.analysis.probe.DEFAULT_MAX_ROWS, without importing the analysis for --help
UNKNOWN_CHAR_HINT = "Use only characters the model knows in TEXT_FILE: the features are computed on the text as it is."


def build_parser(prog: str) -> argparse.ArgumentParser:
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
    add = parser.add_argument
    add("text_file", type=Path, metavar="TEXT_FILE", help="the UTF-8 text to probe on")
    add("--features", nargs="+", required=True, metavar="NAME", help="registered features to probe")
    add("--quantity", default=None, help="the quantity probed (default: the state, cell of an LSTM)")
    add("--layers", nargs="+", default=None, metavar="LAYER", help="layers.1 or 1 (default: all)")
    add("--alpha", type=positive_float, nargs="+", default=[0.01], metavar="A",
        help="penalty strength; several: chosen on a validation slice (default 0.01)")  # fmt: skip
    add("--causal", action="store_true", help="ablate each probe's top --k units against random sets")
    add("--target", default=None, metavar="CHARS",
        help="--causal targets: predicted characters (default: where the feature is on)")  # fmt: skip
    add_options(
        parser,
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


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    features = check_features(parser, args.features, "--features")
    if args.target == "":
        parser.error("argument --target: give at least one character, got ''")
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
