"""The network and its Lightning wrapper."""

from lstm_interp.models.char_lstm import CharLSTM

__all__ = ["CharLSTM"]
