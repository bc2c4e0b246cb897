"""The network and its Lightning wrapper.

The names are exported lazily (PEP 562): ``CharLSTMModule`` imports Lightning, which opening or sampling a model
does not need, so it is imported only when the name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lstm_interp.models.char_lstm import CharLSTM
    from lstm_interp.models.char_lstm_module import CharLSTMModule

# Exported name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "CharLSTM": "lstm_interp.models.char_lstm",
    "CharLSTMModule": "lstm_interp.models.char_lstm_module",
}

__all__ = ["CharLSTM", "CharLSTMModule"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
