"""The ``lstm-interp`` command line: ``fit``/``validate``/``test`` (LightningCLI), ``sample``, ``trace``, ``demo``."""

from lstm_interp.cli.main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
