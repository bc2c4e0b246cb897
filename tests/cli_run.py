"""``run_cli(argv)``: the ``lstm-interp`` entry point run in-process, with its exit status, stdout and stderr."""

from __future__ import annotations

import contextlib
import io

from lstm_interp.cli.main import main


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()
