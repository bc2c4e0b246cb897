"""MkDocs hook: the command-line reference, generated from the parsers at build time.

``docs/reference/cli.md`` holds the prose and one marker line, ``<!-- cli-reference -->``; this hook replaces the
marker with every subcommand of ``lstm_interp.cli.main.COMMANDS``: its one-line help and the ``--help`` text of its
real parser (``lstm_interp.cli.main.parser_of(name)``). ``fit``/``validate``/``test`` are one ``LightningCLI``
(``lstm_interp/cli/char_lstm_cli.py``) with no argparse parser to call, so their help is what that CLI prints for
``--help``. Nothing is copied by hand, so the page cannot drift from the code.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

MARKER = "<!-- cli-reference -->"
PAGE = "reference/cli.md"
# Help is wrapped at this width whatever terminal builds the site (the page is the same everywhere), narrow enough
# to fit the content column of the page without scrolling.
COLUMNS = "86"

log = get_plugin_logger(__name__)


@contextlib.contextmanager
def _fixed_width() -> Iterator[None]:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _lightning_help(name: str, prog: str) -> str:
    """What ``lstm-interp <name> --help`` prints: LightningCLI parses, prints and exits before building anything."""
    from lstm_interp.cli.char_lstm_cli import CharLSTMCLI

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        CharLSTMCLI(args=[name, "--help"], parser_kwargs={"prog": prog})
    return out.getvalue()


def command_help(name: str) -> str:
    """The ``--help`` text of ``lstm-interp <name>``, from the command's own parser."""
    from lstm_interp.cli.main import LIGHTNING_COMMANDS, PROG, parser_of

    with _fixed_width():
        if name in LIGHTNING_COMMANDS:
            return _lightning_help(name, PROG)
        return parser_of(name).format_help()


def cli_reference() -> str:
    """Markdown for every subcommand, in the order ``lstm-interp --help`` lists them."""
    from lstm_interp.cli.main import COMMANDS, LIGHTNING_COMMANDS, PROG, build_parser

    with _fixed_width():
        top = build_parser().format_help()
    parts = [f"## `{PROG}`\n", f"```text\n{top.rstrip()}\n```\n"]
    for name, command in COMMANDS.items():
        text = command_help(name).rstrip()
        parts.append(f"## `{PROG} {name}`\n\n{command.help[0].upper()}{command.help[1:]}.\n")
        if name in LIGHTNING_COMMANDS:
            # Several hundred lines (every Trainer flag): folded, so the page stays readable.
            parts.append(f'??? note "`{PROG} {name} --help`"\n\n' + _indent(f"```text\n{text}\n```") + "\n")
        else:
            parts.append(f"```text\n{text}\n```\n")
    return "\n".join(parts)


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.splitlines())


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        log.warning("%s has no %s marker: the generated command reference has nowhere to go", PAGE, MARKER)
        return markdown
    return markdown.replace(MARKER, cli_reference())
