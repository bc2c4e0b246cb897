"""Analyses of traces: numbers computed from a :class:`~lstm_interp.Trace`, ready for loggers, tables and plots.

- :class:`ActivationStats`: the one streaming, mergeable accumulator over a text of any length (gate saturation
  counts, cell moments, next-character log-probabilities);
- :func:`gate_saturation` / :class:`GateSaturation`: the paper's Section 4.2 table, computed through it;
- :func:`find_cells` / :func:`explain_unit`: units against features (one row format, ``CellScore.to_dict``),
  ranked so that units that visibly switch come first (:func:`visible_effect`), and scored against the controls a
  feature implies (:class:`ControlScore`);
- :func:`select_cells` / :class:`StateIndex`: LSTMVis's selection of the units on over a span, and the bit-packed
  index of a whole corpus that finds the spans where such a selection is on together (:class:`Match`);
- :func:`fit_probe` / :class:`Probe`: a sparse (elastic-net) probe of a feature from many units at once, how many
  of its top units it needs, and its selectivity against a :func:`control_task`; :func:`probe_rows` reads a long
  trace's units once, in bounded memory, for several probes;
- :class:`UnitAtlas`: every unit of every layer from one streaming pass over a corpus (its top and bottom
  contexts, kept by :class:`ContextHeap`; histogram, saturation and gate habits; features; output effects);
- :func:`corpus_pass`: every corpus-scale pass above as a ``Trainer.predict`` over shards of the corpus, on any
  accelerator, number of processes or nodes (:class:`CorpusPassError` when a rank fails), and
  :func:`corpus_scores` / :class:`CorpusScores`: ``find_cells``'s scores over a whole corpus, merged across shards.
"""

from lstm_interp.analysis.activation_stats import ActivationStats
from lstm_interp.analysis.context_heap import ContextHeap
from lstm_interp.analysis.control_scores import ControlScore
from lstm_interp.analysis.control_task import control_task
from lstm_interp.analysis.corpus_pass import CorpusPassError, corpus_pass
from lstm_interp.analysis.corpus_scores import CorpusScores, corpus_scores
from lstm_interp.analysis.explain_unit import explain_unit
from lstm_interp.analysis.find_cells import CellScore, CellTable, find_cells
from lstm_interp.analysis.gate_saturation import GateSaturation, gate_saturation
from lstm_interp.analysis.probe import Probe, fit_probe
from lstm_interp.analysis.probe_rows import ProbeRows, probe_rows
from lstm_interp.analysis.select_cells import select_cells
from lstm_interp.analysis.state_index import Match, StateIndex
from lstm_interp.analysis.unit_atlas import UnitAtlas
from lstm_interp.analysis.visible_effect import MIN_EFFECT, visible_effect

__all__ = [
    "MIN_EFFECT",
    "ActivationStats",
    "CellScore",
    "CellTable",
    "ContextHeap",
    "ControlScore",
    "CorpusPassError",
    "CorpusScores",
    "GateSaturation",
    "Match",
    "Probe",
    "ProbeRows",
    "StateIndex",
    "UnitAtlas",
    "control_task",
    "corpus_pass",
    "corpus_scores",
    "explain_unit",
    "find_cells",
    "fit_probe",
    "gate_saturation",
    "probe_rows",
    "select_cells",
    "visible_effect",
]
