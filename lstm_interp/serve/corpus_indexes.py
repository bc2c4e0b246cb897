"""``CorpusIndexes``: the live explorer's corpus indexes, opened from the cache or built, in the background if asked.

Each corpus is indexed at every threshold (:func:`~lstm_interp.analysis.index_cache.cached_index`: opened from the
index cache when an entry of this model, text and threshold exists, built into it otherwise). Built in the background,
the progress is readable at any time (``percent``), and a corpus request made before the indexes are ready gets 503
"indexing, n%" (``require``); the indexes are published together when all are ready, so a request never sees some
corpora and not others.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.analysis import StateIndex
from lstm_interp.analysis.index_cache import cached_index, find_cached_index
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.serve.api_error import ApiError

# The longest a background build waits for its start_after event: a server whose opening failed still indexes.
START_AFTER_TIMEOUT_S = 60.0


class CorpusIndexes:
    """Every corpus's :class:`~lstm_interp.analysis.StateIndex` at every threshold.

    Args:
        model: the network the indexes are of.
        corpora: texts (``str``) or UTF-8 files (``Path``, streamed).
        thresholds: the thresholds θ each corpus is indexed at.
        background: build on a thread of its own (the constructor returns at once); else before it returns, raising
            what the build raises.
        start_after: with ``background``, a build waits until this event is set (at most
            :data:`START_AFTER_TIMEOUT_S`): the live explorer sets it once its opening passage is worked out, so that
            the build (which imports Lightning and traces on two cores) does not slow the page's first seconds. An
            index in the cache is opened at once.
    """

    def __init__(
        self,
        model: CharLSTM,
        corpora: Sequence[str | Path],
        thresholds: Sequence[float],
        *,
        background: bool = False,
        start_after: threading.Event | None = None,
    ) -> None:
        self.model = model
        self.corpora = list(corpora)
        self.thresholds = list(thresholds)
        self.indexes: list[dict[float, StateIndex]] = []
        # While the indexes are built: (entries done, entries in all, characters traced, characters in all).
        self.indexing: tuple[int, int, int, int] | None = (0, len(self.corpora) * len(self.thresholds), 0, 0)
        self.error: str | None = None
        self._start_after = start_after if background else None  # a build in the caller's thread starts at once
        if background:
            threading.Thread(target=self._index_all, name="lstm-interp-index", daemon=True).start()
        else:
            self._index_all(raise_errors=True)

    def _index_all(self, raise_errors: bool = False) -> None:
        """Open or build every corpus's index at every threshold, noting the progress; the indexes are published
        together when all are ready."""
        built: list[dict[float, StateIndex]] = []
        entries = len(self.corpora) * len(self.thresholds)
        try:
            for i, text in enumerate(self.corpora):
                indexes = {}
                for j, theta in enumerate(self.thresholds):
                    done = i * len(self.thresholds) + j

                    def note(chars: int, total: int, done: int = done) -> None:
                        self.indexing = (done, entries, chars, total)

                    # Opened from the index cache when an entry was built before (by an earlier start, or ahead of
                    # time by `lstm-interp index MODEL CORPUS`), in well under a second; built into it otherwise. An
                    # entry is trusted only if its own header says it is of this model, text and threshold.
                    found = find_cached_index(self.model, text, threshold=theta)
                    if found is None:
                        if self._start_after is not None:  # a build waits (once) for the page's first seconds
                            self._start_after.wait(START_AFTER_TIMEOUT_S)
                        found = cached_index(self.model, text, threshold=theta, progress=note)
                    assert found is not None  # one process: rank 0
                    indexes[theta] = found
                built.append(indexes)
        except Exception as err:  # in the background: every corpus request says it, rather than a dead thread
            if raise_errors:
                raise
            self.error = f"{type(err).__name__}: {err}"
            return
        self.indexes = built
        self.indexing = None

    def percent(self) -> float | None:
        """How far the corpus indexes are built, 0-100; ``None`` once they are ready."""
        if self.indexing is None:
            return None
        done, entries, chars, total = self.indexing
        return 100.0 * (done + (chars / total if total else 0.0)) / max(entries, 1)

    def require(self) -> None:
        """Raise the answer of a corpus request made before the indexes are ready: 503 with the progress (the page
        shows it, and asks again), or 500 with the error that stopped the build.

        Raises:
            ApiError: no corpus, a build still running, or one that failed.
        """
        if not self.corpora:
            raise ApiError(400, "no corpus to match in: start the server with --corpus FILE")
        if self.error is not None:
            raise ApiError(500, f"indexing the corpora failed: {self.error}")
        percent = self.percent()
        if percent is not None:
            raise ApiError(503, f"indexing, {percent:.0f}%: select and match in the corpora work once it is done")
