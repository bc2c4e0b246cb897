"""``lstm-interp explore NAME --text FILE``: ``analyze`` with the text as an option, for a pretrained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import MODEL_HELP
from lstm_interp.cli.analyze import add_analysis_options, run


def build_parser(prog: str) -> argparse.ArgumentParser:
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


__all__ = ["build_parser", "run"]
