"""``lazy_exports``: PEP 562 module attributes imported on first use, for the package ``__init__`` files.

A package that re-exports names from heavy modules (Lightning, matplotlib, the Hub) pays for them only when a name
is used: ``__getattr__`` imports the defining module then, and caches the value in the package's namespace so that
later look-ups do not come back here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for ``exports`` (name -> module that defines it).

    Args:
        package: the package's ``__name__`` (named in the error for an unknown attribute).
        namespace: the package's ``globals()``, where each value is cached once imported.
        exports: exported name -> the module it is imported from.

    Example::

        >>> __getattr__, __dir__ = lazy_exports(__name__, globals(), {"CharLSTM": "lstm_interp.models.char_lstm"})
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
