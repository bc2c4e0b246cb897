"""Lightning callbacks of lstm_interp, importable as ``lstm_interp.callbacks``.

This folder sits at the top of the repository (the design card's layout) and is installed as the
``lstm_interp.callbacks`` package (see ``[tool.setuptools.package-dir]`` in pyproject.toml).

One public callback, :class:`LSTMActivationMonitor` (``lstm_activation_monitor.py``). Its private modules import
downwards only: ``_monitor_recording`` (one recording) uses ``_monitor_targets`` (settings, modules, probes,
features), ``_probe_capture`` (hooks on recurrent modules) and ``_recording_writer`` (files, figures, loggers);
none of them imports the monitor.
"""

from lstm_interp.callbacks.lstm_activation_monitor import LSTMActivationMonitor

__all__ = ["LSTMActivationMonitor"]
