"""The network and its Lightning wrapper.

The names are exported lazily (PEP 562): ``CharLSTMModule`` imports Lightning, which opening or sampling a model
does not need, so it is imported only when the name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lstm_interp._lazy import lazy_exports

if TYPE_CHECKING:
    from lstm_interp.models.char_lstm import CharLSTM
    from lstm_interp.models.char_lstm_module import CharLSTMModule

# Exported name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "CharLSTM": "lstm_interp.models.char_lstm",
    "CharLSTMModule": "lstm_interp.models.char_lstm_module",
}

__all__ = ["CharLSTM", "CharLSTMModule"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
