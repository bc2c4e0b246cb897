"""Each request's time on the model's thread: a deadline its work checks, and the wait for that thread (issue 21).

The explorer's work runs on one executor thread, one request after another (:func:`~lstm_interp.serve.create_app`),
so a request that ran for a minute would hold every other for that minute. Torch work on a thread cannot be killed,
so stopping is cooperative: the work calls :meth:`Deadline.check` between its phases and inside its long loops (per
trace segment, per feature, per match), and stops there with :class:`Cancelled`.

A request is timed on two clocks, so that one queued behind a long request is not failed for the wait:

- **the queue**: from its arrival at the executor to the start of its work, at most ``queue_timeout_s``. A request
  still waiting then is dropped unstarted: 503, "the server is busy", with ``Retry-After``.
- **the work**: from its start, at most ``request_timeout_s``: 504, naming the limit. The response is sent at the
  deadline; the work itself stops at its next check (within one trace segment,
  :data:`~lstm_interp.serve.explorer.SEGMENT_STEPS` steps).

A client that disconnects cancels its work: a queued request is dropped, a running one stops at its next check.
What became of each request's work is counted in :class:`WorkStats` (``GET /api/info``'s ``work``).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar

from lstm_interp.serve.api_error import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request

T = TypeVar("T")


class Cancelled(Exception):
    """Work stopped at a :meth:`Deadline.check`: ``reason`` is ``"deadline"`` or ``"disconnect"``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClientGone(Exception):
    """The client disconnected before its response: there is no one to answer."""


class Deadline:
    """When a request's work must stop: set by the side that waits for it, checked by the work.

    Args:
        timeout_s: the work's time from :meth:`start`; ``math.inf`` for none.

    Example::

        >>> deadline = Deadline(math.inf)
        >>> deadline.start()
        >>> deadline.check()  # returns: not cancelled, not expired
        >>> deadline.cancel("disconnect")
        >>> deadline.check()
        Traceback (most recent call last):
        ...
        lstm_interp.serve.deadline.Cancelled: disconnect
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.expires: float | None = None  # time.monotonic() when the work must stop; set as it starts
        self.reason: str | None = None  # why it was cancelled, once it is

    def start(self) -> None:
        self.expires = time.monotonic() + self.timeout_s

    def remaining(self) -> float:
        """Seconds left to the work (its whole time before it starts)."""
        return self.timeout_s if self.expires is None else max(0.0, self.expires - time.monotonic())

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def check(self) -> None:
        """Raise :class:`Cancelled` once the work is cancelled or past its time."""
        if self.reason is None and self.expires is not None and time.monotonic() > self.expires:
            self.reason = "deadline"
        if self.reason is not None:
            raise Cancelled(self.reason)


def unlimited() -> Deadline:
    """A started deadline that never expires: for work outside a request (the page's opening, direct calls)."""
    deadline = Deadline(math.inf)
    deadline.start()
    return deadline


class WorkStats:
    """What became of the requests' work since the server started (kept on ``app.state.work``).

    ``submitted`` counts work queued for the model's thread; ``started`` and ``finished`` work that ran;
    ``stopped`` work that started and stopped at a check, by reason (``"deadline"``, ``"disconnect"``);
    ``dropped`` work that never started (``"queue"``: waited too long, ``"disconnect"``); ``refused`` requests over
    the cost limit, refused before any work; ``gone`` requests whose client left before their response (mid-body
    too).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # counted from the model's thread and the event loop's
        self.submitted = self.started = self.finished = self.refused = self.gone = 0
        self.stopped: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    def count(self, what: str, reason: str | None = None) -> None:
        with self._lock:
            if reason is None:
                setattr(self, what, getattr(self, what) + 1)
            else:
                getattr(self, what)[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "submitted": self.submitted, "started": self.started, "finished": self.finished,
                "stopped": dict(self.stopped), "dropped": dict(self.dropped), "refused": self.refused,
                "gone": self.gone,
            }  # fmt: skip


class WorkQueue:
    """Runs each request's work on ``executor`` under its two clocks (the module docstring).

    Args:
        executor: the model's executor (one thread).
        request_timeout_s: the longest a request's work may run, from its start.
        queue_timeout_s: the longest a request may wait for its work to start.
    """

    def __init__(self, executor: Executor, request_timeout_s: float, queue_timeout_s: float) -> None:
        self.executor = executor
        self.request_timeout_s = request_timeout_s
        self.queue_timeout_s = queue_timeout_s
        self.stats = WorkStats()

    async def run(self, request: Request, work: Callable[[Deadline], T]) -> T:
        """``work(deadline)``'s result, run on the executor.

        Raises:
            ApiError: 503 when its work did not start within ``queue_timeout_s``; 504 when it ran past
                ``request_timeout_s``.
            ClientGone: the client disconnected (its work is dropped, or stopped at its next check).
        """
        loop = asyncio.get_running_loop()
        deadline = Deadline(self.request_timeout_s)
        started = asyncio.Event()

        def call() -> T:
            if deadline.reason is not None:  # cancelled while queued, too late to cancel the future itself
                self.stats.count("dropped", deadline.reason)
                raise Cancelled(deadline.reason)
            deadline.start()
            loop.call_soon_threadsafe(started.set)
            self.stats.count("started")
            try:
                result = work(deadline)
            except Cancelled as err:
                self.stats.count("stopped", err.reason)
                raise
            self.stats.count("finished")
            return result

        future = self.executor.submit(call)
        self.stats.count("submitted")
        waiting = asyncio.wrap_future(future)
        # Once the response is sent at the deadline, no one awaits the work: retrieve its outcome so that asyncio
        # does not log "exception was never retrieved" when it stops.
        waiting.add_done_callback(lambda f: f.cancelled() or f.exception())
        gone = asyncio.ensure_future(_disconnected(request))
        begun = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({waiting, begun, gone}, timeout=self.queue_timeout_s, return_when="FIRST_COMPLETED")
            if gone.done():
                self._abandon(future, deadline)
                raise ClientGone
            if not begun.done() and not waiting.done():
                if future.cancel():  # still queued: it never runs
                    self.stats.count("dropped", "queue")
                    raise ApiError(
                        503,
                        f"the server is busy: this request waited {self.queue_timeout_s:g} s (queue_timeout_s) for "
                        "the requests ahead of it; try again",
                    )
                await asyncio.wait({waiting, begun}, return_when="FIRST_COMPLETED")  # it has just started
            done, _ = await asyncio.wait({waiting, gone}, timeout=deadline.remaining(), return_when="FIRST_COMPLETED")
            if waiting in done:
                try:
                    return waiting.result()
                except Cancelled as err:
                    if err.reason == "disconnect":  # (already counted where it was cancelled)
                        raise ClientGone from None
                    raise self.timeout_error() from None
            if gone in done:
                self._abandon(future, deadline)
                raise ClientGone
            deadline.cancel("deadline")  # the work is between checks: it stops at its next one
            raise self.timeout_error()
        finally:
            gone.cancel()
            begun.cancel()

    def timeout_error(self) -> ApiError:
        return ApiError(
            504,
            f"the request's work ran past the limit of {self.request_timeout_s:g} s (request_timeout_s) and was "
            "stopped; ask for less (a shorter text, fewer interventions, a smaller top or context)",
        )

    def _abandon(self, future: Any, deadline: Deadline) -> None:
        """The client left: drop its work if still queued, else stop it at its next check."""
        self.stats.count("gone")
        deadline.cancel("disconnect")
        if future.cancel():
            self.stats.count("dropped", "disconnect")


async def _disconnected(request: Request) -> None:
    """Return once the client has disconnected. The body is read by then, so the server's next message for this
    request is ``http.disconnect``, sent when the connection closes."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.05)  # a server that answers at once with empty bodies: do not spin
