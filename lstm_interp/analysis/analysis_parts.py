"""``AnalysisParts``: the accumulator of ``run_analysis``'s pass over a text (a corpus pass on Lightning's engine).

It keeps the streaming statistics (:class:`~lstm_interp.analysis.ActivationStats`: gate saturation counts at the
paper's thresholds, cell moments, every character's log-probability) and the state quantity of every layer whole,
because ``find_cells`` with controls and the busiest-window figures need every value. Each segment's gates are
counted and dropped, so memory is the kept states plus one segment's gates.
"""

from __future__ import annotations

from lstm_interp.analysis.activation_stats import ActivationStats
from lstm_interp.tracing import GATES, Trace, state_quantity

SATURATION_LOW, SATURATION_HIGH = 0.1, 0.9  # the paper's thresholds


class AnalysisParts:
    """The statistics and the kept states of the segments added so far (see the module docstring).

    Args:
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``. num_layers: the model's layers.
    """

    def __init__(self, cell: str, num_layers: int) -> None:
        self.stats = ActivationStats(cell, [f"layers.{i}" for i in range(num_layers)], low=SATURATION_LOW,
                                     high=SATURATION_HIGH)  # fmt: skip
        self.quantity = state_quantity(cell)
        self.kept: list[Trace] = []

    @staticmethod
    def trace_names(cell: str) -> list[str]:
        """What the pass traces: every layer's state and gates, and the log-probabilities."""
        return [f"layers.*.{state_quantity(cell)}", *(f"layers.*.{gate}" for gate in GATES[cell]), "log_probs"]

    def update(self, trace: Trace, start: int) -> AnalysisParts:
        """Add the next segment; returns self."""
        self.stats.update(trace)
        self.kept.append(trace.select(f"layers.*.{self.quantity}"))
        return self

    def merge(self, other: AnalysisParts) -> AnalysisParts:
        """These parts followed by ``other``'s."""
        merged = AnalysisParts.__new__(AnalysisParts)
        merged.stats, merged.quantity = self.stats.merge(other.stats), self.quantity
        merged.kept = self.kept + other.kept
        return merged

    def states(self) -> Trace:
        """The kept states of the whole text, as one trace."""
        return Trace.concat(self.kept)
