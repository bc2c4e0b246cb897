"""Analyses of traces: numbers computed from a :class:`~lstm_interp.Trace`, ready for loggers, tables and plots."""

from lstm_interp.analysis.activation_stats import ActivationStats
from lstm_interp.analysis.explain_unit import explain_unit
from lstm_interp.analysis.find_cells import CellScore, CellTable, find_cells
from lstm_interp.analysis.gate_saturation import GateSaturation, gate_saturation

__all__ = [
    "ActivationStats",
    "CellScore",
    "CellTable",
    "GateSaturation",
    "explain_unit",
    "find_cells",
    "gate_saturation",
]
