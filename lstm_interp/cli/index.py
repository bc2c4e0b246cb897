"""``lstm-interp index MODEL CORPUS... [--out DIR]``: a state index of a corpus, on Lightning's engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_corpus_pass_options,
    add_model_argument,
    add_output_options,
    check_corpus_files,
    corpus_pass_arguments,
)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Trace a corpus and write its state index (each unit on or off at each character), the "
        "search behind select & match, as a folder.",
    )
    add_model_argument(parser)
    parser.add_argument("corpus", nargs="+", type=Path, metavar="CORPUS", help="UTF-8 text files, indexed end to end")
    add_output_options(parser, "an earlier index", default_help="the index cache, where serve finds it")
    parser.add_argument("--threshold", type=float, default=0.3, help="a unit is on where its value is above (0.3)")
    names = "the quantities to index, e.g. layers.1.hidden (default: every layer's state)"
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME", help=names)
    add_corpus_pass_options(parser)
    return parser


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    check_corpus_files(parser, args.corpus, "CORPUS")
    from lstm_interp.analysis import StateIndex
    from lstm_interp.analysis.index_cache import cached_index
    from lstm_interp.hub.load_pretrained import load_pretrained

    model = load_pretrained(args.model, args.revision)
    options = {"threshold": args.threshold, "names": args.names, **corpus_pass_arguments(args)}
    if args.out is None:
        index = cached_index(model, list(args.corpus), **options)
    else:
        index = StateIndex.build(model, list(args.corpus), args.out, overwrite=args.overwrite, **options)
    if index is not None:  # rank 0
        print(f"wrote {index.path}: {index.num_steps:,} characters, names {index.names}")
    return 0
