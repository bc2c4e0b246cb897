"""``lstm-interp explore NAME --text FILE``: the analysis report of a pretrained model on any text.

``NAME`` is what :func:`~lstm_interp.load_pretrained` takes: ``novel`` (alias ``war-and-peace``), ``code`` (alias
``linux``), a Hub repo id or a local folder. The model comes through the Hub (or its cache), or from the copy bundled
in the wheel when the Hub cannot be reached; then :func:`~lstm_interp.cli.run_analysis.run_analysis` writes what
``lstm-interp analyze`` writes: ``cells.json``, figures, the gate saturation table and ``report.html``, which opens on
the unit that best tracks each feature (the quote cell of the novel model, say).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli.analyze import add_analysis_options, run_command
from lstm_interp.hub.load_pretrained import ALIASES, PRETRAINED, load_pretrained


def build_parser(prog: str = "lstm-interp explore") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp explore``."""
    names = sorted([*PRETRAINED, *ALIASES])
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Analyse a pretrained model on a text: the units that track each feature, gate saturation, figures and "
            "an HTML page (what `lstm-interp analyze` writes for a model folder)."
        ),
        epilog=(
            "Examples: lstm-interp explore novel --text chapter.txt --features inside_quotes position_in_line; "
            "lstm-interp explore code --text driver.c --features inside_comment brace_depth. "
            f"Pretrained names: {', '.join(names)}."
        ),
    )
    parser.add_argument(
        "model", metavar="NAME", help=f"a pretrained name ({', '.join(names)}), a Hub repo id or a model folder"
    )
    parser.add_argument(
        "--text", dest="text_file", type=Path, required=True, metavar="FILE", help="the UTF-8 text to analyse"
    )
    parser.add_argument("--revision", default=None, help="a Hub branch, tag or commit (default: main)")
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
    args = parser.parse_args(argv)
    label = Path(args.model).name if Path(args.model).is_dir() else args.model.replace("/", "_")
    return run_command(parser, args, lambda: load_pretrained(args.model, args.revision), label)
