"""Analyses of traces: numbers computed from a :class:`~lstm_interp.Trace`, ready for loggers, tables and plots.

- :class:`ActivationStats`: the one streaming, mergeable accumulator over a text of any length (gate saturation
  counts, cell moments, next-character log-probabilities);
- :func:`gate_saturation` / :class:`GateSaturation`: the paper's Section 4.2 table, computed through it;
- :func:`find_cells` / :func:`explain_unit`: units against features (one row format, ``CellScore.to_dict``),
  ranked so that units that visibly switch come first (:func:`visible_effect`), and scored against the controls a
  feature implies (:class:`ControlScore`);
- :func:`select_cells` / :class:`StateIndex`: LSTMVis's selection of the units on over a span, and the bit-packed
  index of a whole corpus that finds the spans where such a selection is on together (:class:`Match`).
"""

from lstm_interp.analysis.activation_stats import ActivationStats
from lstm_interp.analysis.control_scores import ControlScore
from lstm_interp.analysis.explain_unit import explain_unit
from lstm_interp.analysis.find_cells import CellScore, CellTable, find_cells
from lstm_interp.analysis.gate_saturation import GateSaturation, gate_saturation
from lstm_interp.analysis.select_cells import select_cells
from lstm_interp.analysis.state_index import Match, StateIndex
from lstm_interp.analysis.visible_effect import MIN_EFFECT, visible_effect

__all__ = [
    "MIN_EFFECT",
    "ActivationStats",
    "CellScore",
    "CellTable",
    "ControlScore",
    "GateSaturation",
    "Match",
    "StateIndex",
    "explain_unit",
    "find_cells",
    "gate_saturation",
    "select_cells",
    "visible_effect",
]
