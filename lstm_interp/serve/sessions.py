"""``Sessions``: each open page's last traced texts, so that a keystroke retraces from the first changed character.

A page sends a ``session`` id it drew at random when it loaded, and ``base``, the ``version`` of the last trace
response it applied. The server keeps, per session and per set of traced names (the shown layer's quantity with the
log-probabilities; every layer's state for the features panel), a
:class:`~lstm_interp.tracing.resumable_trace.ResumableTrace` of the last text, so the work of a request is the
characters from the first changed chunk on; and when the page holds exactly what that entry last answered
(``base`` equals its version), the response carries only the steps from there (``from``), which the page splices
onto what it holds. Anything else (no session, an evicted one, a page that dropped a stale response) gets the whole
trace, computed the same way, so a response never depends on what the cache held.

Memory is bounded: at most :data:`MAX_SESSIONS` sessions (least recently used evicted) of :data:`MAX_ENTRIES` entries,
each the traced names' values for at most the server's text limit (for the 2x512 models at 5,000 characters about
12 MB for a trace entry, 20 MB for the features' two layers).
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.serve.api_error import ApiError
from lstm_interp.tracing.resumable_trace import DEFAULT_EVERY, ResumableTrace

MAX_SESSIONS = 8
MAX_ENTRIES = 3  # per session: the shown trace, the features' trace, and the plain run beside an intervened one
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass
class Edited:
    """One session's trace of one set of names, and the version of the response it last gave (``None`` while an
    update is under way or after one failed: the page cannot hold what it would name)."""

    editing: ResumableTrace
    version: int | None = None


class Sessions:
    """The pages' edited traces: ``entry(session, names)`` finds or makes one, least recently used evicted.

    Args:
        model: the network traced.
        every: characters per chunk of every entry's grid (and of the server's full traces, so the two agree).
        max_sessions: sessions kept.
        max_entries: entries kept per session.
    """

    def __init__(
        self,
        model: CharLSTM,
        every: int = DEFAULT_EVERY,
        max_sessions: int = MAX_SESSIONS,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        for name, number in (("every", every), ("max_sessions", max_sessions), ("max_entries", max_entries)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {number!r}")
        self.model = model
        self.every = every
        self.max_sessions = max_sessions
        self.max_entries = max_entries
        self._sessions: OrderedDict[str, OrderedDict[tuple[str, ...], Edited]] = OrderedDict()
        self._versions = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sessions)

    def entry(self, session: str | None, names: list[str]) -> Edited:
        """The session's entry for ``names`` (made, and the least recently used evicted, if need be); for no
        session, a fresh entry that is not kept."""
        key = tuple(names)
        if session is None:
            return Edited(ResumableTrace(self.model, names_filter=names, every=self.every))
        entries = self._sessions.get(session)
        if entries is None:
            entries = self._sessions[session] = OrderedDict()
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(session)
        found = entries.get(key)
        if found is None:
            found = entries[key] = Edited(ResumableTrace(self.model, names_filter=names, every=self.every))
            while len(entries) > self.max_entries:
                entries.popitem(last=False)
        entries.move_to_end(key)
        return found

    def next_version(self) -> int:
        """A version number no response of this server has had (unique across sessions and entries)."""
        return next(self._versions)


def session_of(data: dict[str, Any]) -> tuple[str | None, int | None]:
    """The request's ``session`` id and ``base`` version, each ``None`` when absent.

    Raises:
        ApiError: 400 for a session id other than 8-64 letters, digits, ``-`` or ``_``, or a base that is not an
            integer >= 1.
    """
    session, base = data.get("session"), data.get("base")
    if session is not None and (not isinstance(session, str) or not SESSION_ID.fullmatch(session)):
        raise ApiError(400, f"`session` must be 8 to 64 letters, digits, '-' or '_', got {session!r:.80}")
    if base is not None and (isinstance(base, bool) or not isinstance(base, int) or base < 1):
        raise ApiError(400, f"`base` must be a trace response's version (an integer >= 1) or null, got {base!r:.80}")
    return session, base
