"""``lstm_interp.serve``: a live explorer, a small web app that traces what you type (``lstm-interp serve MODEL``).

Starlette and uvicorn are an optional extra (``pip install lstm-interp[serve]``); importing this package imports
neither until :func:`create_app` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lstm_interp.serve.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import lstm_interp.serve` works without starlette installed and says so only on use.
    if name == "create_app":
        from lstm_interp.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'lstm_interp.serve' has no attribute {name!r}")
