"""Exact, fast traces of every gate, cell and hidden state, and the operations on them."""

from lstm_interp.tracing.cell_trace import trace_cell
from lstm_interp.tracing.module_trace import trace_rnn
from lstm_interp.tracing.most_variable_units import UnitVariance, most_variable_units
from lstm_interp.tracing.quantities import (
    GATES,
    MEMORY_GATE,
    QUANTITIES,
    QUANTITY_KINDS,
    QUANTITY_ORDER,
    display_codes,
    display_values,
    quantity_kind,
    state_quantity,
)
from lstm_interp.tracing.recurrence import linear_scan
from lstm_interp.tracing.resumable_trace import ResumableTrace
from lstm_interp.tracing.trace import Trace, available_names, trace
from lstm_interp.tracing.trace_segments import DEFAULT_SEGMENT_CHARS, trace_segments

__all__ = [
    "DEFAULT_SEGMENT_CHARS",
    "GATES",
    "MEMORY_GATE",
    "QUANTITIES",
    "QUANTITY_KINDS",
    "QUANTITY_ORDER",
    "ResumableTrace",
    "Trace",
    "UnitVariance",
    "available_names",
    "display_codes",
    "display_values",
    "linear_scan",
    "most_variable_units",
    "quantity_kind",
    "state_quantity",
    "trace",
    "trace_cell",
    "trace_rnn",
    "trace_segments",
]
