"""Lightning callbacks of lstm_interp, importable as ``lstm_interp.callbacks``.

This folder sits at the top of the repository (the design card's layout) and is installed as the
``lstm_interp.callbacks`` package (see ``[tool.setuptools.package-dir]`` in pyproject.toml).
"""

from lstm_interp.callbacks.lstm_activation_monitor import LSTMActivationMonitor

__all__ = ["LSTMActivationMonitor"]
