"""``lstm-interp index MODEL CORPUS... [--out DIR]``: build a state index of a corpus, on Lightning's engine.

Parses the command line and calls :meth:`~lstm_interp.analysis.StateIndex.build` (``--out DIR``) or
:func:`~lstm_interp.analysis.index_cache.cached_index` (no ``--out``: the index cache, where ``lstm-interp serve MODEL
--corpus CORPUS`` opens it at start-up); the Trainer's own flags pick the processes, GPUs or nodes of the pass.
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
    check_model_argument,
    trainer_arguments,
)


def build_parser(prog: str = "lstm-interp index") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp index``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Trace a corpus and write its state index (each unit on or off at each character), the "
        "search behind select & match, as a folder.",
    )
    add_model_argument(parser)
    parser.add_argument("corpus", nargs="+", type=Path, metavar="CORPUS", help="UTF-8 text files, indexed end to end")
    parser.add_argument("--out", type=Path, default=None,
                        help="the index folder to write (default: the index cache, where serve finds it)")  # fmt: skip
    parser.add_argument("--threshold", type=float, default=0.3, help="a unit is on where its value is above (0.3)")
    names = "the quantities to index, e.g. layers.1.hidden (default: every layer's state)"
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME", help=names)
    add_revision_argument(parser)
    add_skip_unknown_argument(parser)
    add_overwrite_argument(parser, "an earlier index")
    add_trainer_arguments(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp index") -> int:
    """Run ``lstm-interp index`` with ``argv``; returns the exit status.

    Bad arguments exit with status 2 (argparse): a MODEL that can be nothing, a missing corpus file.

    Raises:
        FileExistsError: ``--out`` holds files an index does not write (status 1, before any work).
        ValueError: text outside the vocabulary, a bad threshold or name (status 1, before the pass).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    check_corpus_files(parser, args.corpus, "CORPUS")
    from lstm_interp.analysis import StateIndex
    from lstm_interp.analysis.index_cache import cached_index
    from lstm_interp.hub.load_pretrained import load_pretrained

    model = load_pretrained(args.model, args.revision)
    options = {"threshold": args.threshold, "names": args.names, "shard_chars": args.shard_chars,
               "prime_chars": args.prime_chars, "on_unknown": "skip" if args.skip_unknown else "error",
               **trainer_arguments(args)}  # fmt: skip
    if args.out is None:
        index = cached_index(model, list(args.corpus), **options)
    else:
        index = StateIndex.build(model, list(args.corpus), args.out, overwrite=args.overwrite, **options)
    if index is not None:  # rank 0
        print(f"wrote {index.path}: {index.num_steps:,} characters, names {index.names}")
    return 0
