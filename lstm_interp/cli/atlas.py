"""``lstm-interp atlas MODEL CORPUS --out DIR``: :func:`~lstm_interp.report.atlas_pages.run_atlas`, a page per unit."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_corpus_pass_options,
    add_model_argument,
    add_options,
    add_output_options,
    check_corpus_files,
    check_features,
    corpus_pass_arguments,
    non_negative_int,
    positive_int,
)

# The library's defaults (lstm_interp.analysis.unit_atlas), repeated so that --help imports no torch.
DEFAULT_K, DEFAULT_WINDOW, DEFAULT_BINS = 20, 40, 40
DEFAULT_FEATURE_CHARS, DEFAULT_ABLATION_CHARS, DEFAULT_SEGMENT_CHARS = 20_000, 1_000, 16_384


def build_parser(prog: str) -> argparse.ArgumentParser:
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
    parser.add_argument("corpus", type=Path, nargs="+", metavar="CORPUS", help="UTF-8 text files, read end to end")
    add_output_options(parser, "an earlier atlas", default_help="lstm_interp_atlas/<model>_<corpus>")
    add = parser.add_argument
    add("--layers", nargs="+", default=None, metavar="LAYER", help="layers to describe, e.g. layers.1 (default: all)")
    add("--quantity", default=None, help="the quantity described (default the state: cell of an LSTM, else hidden)")
    add_options(
        parser,
        ("--top-k", positive_int, DEFAULT_K, "K", "top and bottom contexts per unit"),
        ("--window", positive_int, DEFAULT_WINDOW, "N", "characters either side of a context; a kept peak dominates "
         "them"),
        ("--bins", positive_int, DEFAULT_BINS, "N", "histogram bins over -1..+1"),
        ("--feature-chars", non_negative_int, DEFAULT_FEATURE_CHARS, "N", "score features on the first N characters; "
         "0: none"),
        ("--ablation-chars", non_negative_int, DEFAULT_ABLATION_CHARS, "N", "zero each unit over the first N "
         "characters, one run per unit; 0: none"),
        ("--segment-chars", positive_int, DEFAULT_SEGMENT_CHARS, "N", "characters traced at a time"),
    )  # fmt: skip
    add("--features", nargs="+", default=None, metavar="NAME", help="registered features to score (default: all)")
    add("--title", default=None, help="the pages' title (default: Unit atlas: <model>)")
    add_corpus_pass_options(parser)
    return parser


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    check_corpus_files(parser, args.corpus, "CORPUS")
    check_features(parser, args.features or [], "--features")
    from lstm_interp.hub.load_pretrained import load_pretrained, source_name
    from lstm_interp.report.atlas_pages import check_atlas_folder, run_atlas

    out = args.out or Path("lstm_interp_atlas") / f"{source_name(args.model)}_{args.corpus[0].stem or 'corpus'}"
    check_atlas_folder(out, overwrite=args.overwrite)
    written = run_atlas(
        load_pretrained(args.model, args.revision), list(args.corpus), out,
        title=args.title or f"Unit atlas: {Path(args.model.rstrip('/')).name or args.model}", overwrite=args.overwrite,
        log=print, layers=args.layers, quantity=args.quantity, k=args.top_k, window=args.window, bins=args.bins,
        feature_chars=args.feature_chars, ablation_chars=args.ablation_chars, features=args.features,
        segment_chars=args.segment_chars, **corpus_pass_arguments(args),
    )  # fmt: skip
    if written is not None:  # rank 0
        print(f"Open {out / 'index.html'}")
    return 0
