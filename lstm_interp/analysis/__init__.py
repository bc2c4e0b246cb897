"""Analyses of traces: numbers computed from a :class:`~lstm_interp.Trace`, ready for loggers, tables and plots."""

from lstm_interp.analysis.gate_saturation import GateSaturation, gate_saturation

__all__ = ["GateSaturation", "gate_saturation"]
