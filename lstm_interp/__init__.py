"""lstm_interp: train character-level LSTMs with Lightning and look inside them."""

from lstm_interp.analysis import explain_unit, find_cells, gate_saturation
from lstm_interp.callbacks import LSTMActivationMonitor
from lstm_interp.config import CharLSTMConfig, ConfigError
from lstm_interp.data import BUNDLED_CORPORA, CharDataModule, EncodedCorpus
from lstm_interp.hub import load_pretrained, push_to_hub
from lstm_interp.metrics import BitsPerCharacter
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.models.char_lstm_module import CharLSTMModule
from lstm_interp.report import write_html_report
from lstm_interp.tracing import Trace, trace, trace_rnn
from lstm_interp.vocab import CharVocab, VocabularyError

__version__ = "0.1.0"

__all__ = [
    "BUNDLED_CORPORA",
    "BitsPerCharacter",
    "CharDataModule",
    "CharLSTM",
    "CharLSTMConfig",
    "CharLSTMModule",
    "CharVocab",
    "ConfigError",
    "EncodedCorpus",
    "LSTMActivationMonitor",
    "Trace",
    "VocabularyError",
    "__version__",
    "explain_unit",
    "find_cells",
    "gate_saturation",
    "load_pretrained",
    "push_to_hub",
    "trace",
    "trace_rnn",
    "write_html_report",
]
