"""The ``lstm-interp`` command line: ``fit``/``validate``/``test`` (LightningCLI), ``sample``, ``trace``, ``demo``,
``analyze``, ``explore`` and ``push``.

Argument parsing only: each command module parses its arguments, calls one library function (``load_pretrained``,
``CharLSTM.generate``, ``trace``, ``run_demo``, ``run_analysis``, ``push_to_hub``) and prints what it did.
"""

from lstm_interp.cli.main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
