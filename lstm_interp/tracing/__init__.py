"""Exact, fast traces of every gate, cell and hidden state."""

from lstm_interp.tracing.module_trace import trace_rnn
from lstm_interp.tracing.recurrence import QUANTITIES, linear_scan
from lstm_interp.tracing.trace import Trace, available_names, trace

__all__ = ["QUANTITIES", "Trace", "available_names", "linear_scan", "trace", "trace_rnn"]
