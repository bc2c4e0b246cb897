"""The network and its Lightning wrapper."""

from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.models.char_lstm_module import CharLSTMModule

__all__ = ["CharLSTM", "CharLSTMModule"]
