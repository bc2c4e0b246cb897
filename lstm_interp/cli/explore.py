"""``lstm-interp explore MODEL --text FILE``: ``lstm-interp analyze MODEL TEXT_FILE`` with the text as an option,
for a pretrained model most often (``novel``, ``code``: :func:`~lstm_interp.load_pretrained` falls back to the copy
bundled in the wheel when the Hub cannot be reached)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import MODEL_HELP
from lstm_interp.cli.analyze import add_analysis_options, run_command


def build_parser(prog: str = "lstm-interp explore") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp explore``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Analyse a pretrained model on a text: the units that track each feature, gate saturation, figures and "
            "an HTML page (what `lstm-interp analyze` writes)."
        ),
        epilog=(
            "Examples: lstm-interp explore novel --text chapter.txt --features inside_quotes position_in_line; "
            "lstm-interp explore code --text driver.c --features inside_comment brace_depth."
        ),
    )
    parser.add_argument("model", metavar="NAME", help=MODEL_HELP)
    parser.add_argument(
        "--text", dest="text_file", type=Path, required=True, metavar="FILE", help="the UTF-8 text to analyse"
    )
    add_analysis_options(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp explore") -> int:
    """Run ``lstm-interp explore`` with ``argv`` (the arguments after ``explore``); returns the exit status.

    Bad arguments exit with status 2 (argparse), as for ``analyze``.

    Raises:
        FileNotFoundError, ValueError: an unknown repo or file on the Hub with no bundled copy to fall back to, text
            outside the vocabulary, a feature constant on the text (the CLI prints them in one line, status 1).
    """
    parser = build_parser(prog)
    return run_command(parser, parser.parse_args(argv))
