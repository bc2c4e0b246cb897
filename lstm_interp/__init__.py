"""lstm_interp: train character-level LSTMs with Lightning and look inside them.

The names below are exported lazily (PEP 562): ``import lstm_interp`` imports none of Lightning, matplotlib or
huggingface_hub; each name imports its module when first used, so ``from lstm_interp import load_pretrained``
pays for the Hub and torch, not for Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lstm_interp._lazy import lazy_exports

if TYPE_CHECKING:
    from lstm_interp.analysis import (
        ActivationStats,
        StateIndex,
        UnitAtlas,
        explain_unit,
        find_cells,
        fit_probe,
        gate_saturation,
        select_cells,
    )
    from lstm_interp.callbacks import LSTMActivationMonitor
    from lstm_interp.config import CharLSTMConfig, ConfigError
    from lstm_interp.data import BUNDLED_CORPORA, CharDataModule, EncodedCorpus
    from lstm_interp.hub import load_pretrained, push_to_hub
    from lstm_interp.interventions import Ablate, Clamp, Patch, Scale, intervene, run_with_interventions
    from lstm_interp.metrics import BitsPerCharacter
    from lstm_interp.models.char_lstm import CharLSTM
    from lstm_interp.models.char_lstm_module import CharLSTMModule
    from lstm_interp.report import run_analysis, write_html_report
    from lstm_interp.tracing import ResumableTrace, Trace, trace, trace_cell, trace_rnn, trace_segments
    from lstm_interp.vocab import CharVocab, VocabularyError

from lstm_interp._version import __version__

# Exported name -> the module it is imported from on first use.
_EXPORTS: dict[str, str] = {
    "Ablate": "lstm_interp.interventions",
    "Clamp": "lstm_interp.interventions",
    "Patch": "lstm_interp.interventions",
    "Scale": "lstm_interp.interventions",
    "intervene": "lstm_interp.interventions",
    "run_with_interventions": "lstm_interp.interventions",
    "ActivationStats": "lstm_interp.analysis",
    "StateIndex": "lstm_interp.analysis",
    "UnitAtlas": "lstm_interp.analysis",
    "BUNDLED_CORPORA": "lstm_interp.data",
    "BitsPerCharacter": "lstm_interp.metrics",
    "CharDataModule": "lstm_interp.data",
    "CharLSTM": "lstm_interp.models.char_lstm",
    "CharLSTMConfig": "lstm_interp.config",
    "CharLSTMModule": "lstm_interp.models.char_lstm_module",
    "CharVocab": "lstm_interp.vocab",
    "ConfigError": "lstm_interp.config",
    "EncodedCorpus": "lstm_interp.data",
    "LSTMActivationMonitor": "lstm_interp.callbacks",
    "ResumableTrace": "lstm_interp.tracing",
    "Trace": "lstm_interp.tracing",
    "VocabularyError": "lstm_interp.vocab",
    "explain_unit": "lstm_interp.analysis",
    "find_cells": "lstm_interp.analysis",
    "fit_probe": "lstm_interp.analysis",
    "gate_saturation": "lstm_interp.analysis",
    "select_cells": "lstm_interp.analysis",
    "load_pretrained": "lstm_interp.hub",
    "push_to_hub": "lstm_interp.hub",
    "run_analysis": "lstm_interp.report",
    "trace": "lstm_interp.tracing",
    "trace_cell": "lstm_interp.tracing",
    "trace_rnn": "lstm_interp.tracing",
    "trace_segments": "lstm_interp.tracing",
    "write_html_report": "lstm_interp.report",
}

__all__ = [
    "BUNDLED_CORPORA",
    "Ablate",
    "ActivationStats",
    "BitsPerCharacter",
    "CharDataModule",
    "CharLSTM",
    "CharLSTMConfig",
    "CharLSTMModule",
    "CharVocab",
    "Clamp",
    "ConfigError",
    "EncodedCorpus",
    "LSTMActivationMonitor",
    "Patch",
    "ResumableTrace",
    "Scale",
    "StateIndex",
    "Trace",
    "UnitAtlas",
    "VocabularyError",
    "__version__",
    "explain_unit",
    "find_cells",
    "fit_probe",
    "gate_saturation",
    "intervene",
    "load_pretrained",
    "push_to_hub",
    "run_analysis",
    "run_with_interventions",
    "select_cells",
    "trace",
    "trace_cell",
    "trace_rnn",
    "trace_segments",
    "write_html_report",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
