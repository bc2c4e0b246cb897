"""``ApiError``: a request the live explorer's API refuses, with the status and a message naming the bad value."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the API refuses: ``status`` and a message naming the bad value and what was expected.

    Args:
        status: the HTTP status (400, 413, 415, 422, 503, 504, ...).
        message: one sentence for the page; the response is ``{"error": message, **details}``.
        details: more fields of the JSON error, for scripts (``"estimate"``, ``"limit"``, ...).
    """

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}
