"""The ``lstm-interp`` command line; :data:`~lstm_interp.cli.main.COMMANDS` lists its commands.

Argument parsing only: each command parses its arguments, calls one library function and prints what it did.
"""

from lstm_interp.cli.main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
