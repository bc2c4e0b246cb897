"""``lstm-interp atlas MODEL CORPUS --out DIR``: every unit of every layer, one page each, from one pass over a corpus.

Parses the command line, checks the corpus files and the output folder, opens MODEL and calls
:func:`~lstm_interp.report.atlas_pages.run_atlas`, which builds the :class:`~lstm_interp.analysis.UnitAtlas` and
writes its folder (``atlas.json``, ``index.html``, ``units/*.html``); then it prints where to look.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_model_argument,
    add_overwrite_argument,
    add_revision_argument,
    add_skip_unknown_argument,
    add_trainer_arguments,
    check_corpus_files,
    check_features,
    check_model_argument,
    non_negative_int,
    positive_int,
    trainer_arguments,
)

# The library's defaults (lstm_interp.analysis.unit_atlas), repeated so that --help imports no torch.
DEFAULT_K, DEFAULT_WINDOW, DEFAULT_BINS = 20, 40, 40
DEFAULT_FEATURE_CHARS, DEFAULT_ABLATION_CHARS = 20_000, 1_000
DEFAULT_SEGMENT_CHARS = 16_384


def build_parser(prog: str = "lstm-interp atlas") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp atlas``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Describe every unit of every layer from one streaming pass over a corpus: its top and bottom contexts "
            "coloured by its value, its histogram and saturation, its gate habits, its best features with their "
            "controls (on the corpus's first characters), what it does to the output (readout weights; the loss "
            "when it is zeroed, on the first characters). Writes atlas.json, a sortable index.html and one page "
            "per unit."
        ),
        epilog="Example: lstm-interp atlas novel book.txt --out atlas_novel/, then open atlas_novel/index.html",
    )
    add_model_argument(parser)
    add = parser.add_argument
    add("corpus", type=Path, nargs="+", metavar="CORPUS", help="UTF-8 text files, read end to end")
    add("--out", "-o", type=Path, default=None, metavar="DIR",
        help="the folder to write (default: lstm_interp_atlas/<model>_<corpus>)")  # fmt: skip
    add("--layers", nargs="+", default=None, metavar="LAYER",
        help="the layers to describe, e.g. layers.1 (default: all)")  # fmt: skip
    add("--quantity", default=None,
        help="the quantity described (default the state: cell for an LSTM, hidden otherwise)")  # fmt: skip
    add("--top-k", dest="k", type=positive_int, default=DEFAULT_K, metavar="K",
        help=f"top and bottom contexts per unit ({DEFAULT_K})")  # fmt: skip
    add("--window", type=positive_int, default=DEFAULT_WINDOW, metavar="N",
        help=f"characters either side of a context; a kept peak dominates them ({DEFAULT_WINDOW})")  # fmt: skip
    add("--bins", type=positive_int, default=DEFAULT_BINS, metavar="N",
        help=f"histogram bins over -1..+1 ({DEFAULT_BINS})")  # fmt: skip
    add("--feature-chars", type=non_negative_int, default=DEFAULT_FEATURE_CHARS, metavar="N",
        help=f"score features on the first N characters ({DEFAULT_FEATURE_CHARS:,}; 0: none)")  # fmt: skip
    add("--ablation-chars", type=non_negative_int, default=DEFAULT_ABLATION_CHARS, metavar="N",
        help="zero each unit over the first N characters, one run per unit "
        f"({DEFAULT_ABLATION_CHARS:,}; 0: none)")  # fmt: skip
    add("--features", nargs="+", default=None, metavar="NAME", help="registered features to score (default: all)")
    add("--segment-chars", type=positive_int, default=DEFAULT_SEGMENT_CHARS, metavar="N",
        help=f"characters traced at a time ({DEFAULT_SEGMENT_CHARS:,})")  # fmt: skip
    add("--title", default=None, help="the pages' title (default: Unit atlas: <model>)")
    add_revision_argument(parser)
    add_skip_unknown_argument(parser)
    add_overwrite_argument(parser, "an earlier atlas")
    add_trainer_arguments(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp atlas") -> int:
    """Run ``lstm-interp atlas`` with ``argv``; returns the exit status.

    Bad arguments exit with status 2 (argparse): a MODEL that can be nothing, a missing corpus file, an unknown
    feature (the message lists the registered ones).

    Raises:
        FileExistsError: ``--out`` holds files an atlas does not write (status 1, before any work).
        FileNotFoundError, ValueError: a broken model, an unknown layer or quantity, text outside the vocabulary,
            a file that is not UTF-8 (status 1, in one line, before the pass).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    check_corpus_files(parser, args.corpus, "CORPUS")
    check_features(parser, args.features or [], "--features")
    from lstm_interp.hub.load_pretrained import load_pretrained, source_name
    from lstm_interp.report.atlas_pages import check_atlas_folder, run_atlas

    out = args.out or Path("lstm_interp_atlas") / f"{source_name(args.model)}_{args.corpus[0].stem or 'corpus'}"
    check_atlas_folder(out, overwrite=args.overwrite)
    written = run_atlas(
        load_pretrained(args.model, args.revision), list(args.corpus), out,
        title=args.title or f"Unit atlas: {Path(args.model.rstrip('/')).name or args.model}", overwrite=args.overwrite,
        log=print, layers=args.layers, quantity=args.quantity, k=args.k, window=args.window, bins=args.bins,
        feature_chars=args.feature_chars, ablation_chars=args.ablation_chars, features=args.features,
        segment_chars=args.segment_chars, on_unknown="skip" if args.skip_unknown else "error",
        shard_chars=args.shard_chars, prime_chars=args.prime_chars, **trainer_arguments(args),
    )  # fmt: skip
    if written is not None:  # rank 0
        print(f"Open {out / 'index.html'}")
    return 0
