"""``run_server``: serve the live explorer of a model on a socket until Ctrl+C or SIGTERM (``lstm-interp serve``).

:func:`~lstm_interp.serve.create_app` makes the web app; this module runs it the way the command does: the model
loaded and run on one thread, the socket bound before serving (so that port 0's pick is known and printed), a
warning when the address is not loopback, and a stop by Ctrl+C or SIGTERM at any moment (loading, indexing or
serving) that goes through the normal clean-up, without a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import uvicorn

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Half the cores: the page's requests run on one thread and a corpus index builds on another, each with a team of
# torch threads; two teams of all the cores (torch's default) oversubscribe them and slow both (RESULTS.md, "Explorer
# start-up").
DEFAULT_THREADS = max(1, (os.cpu_count() or 2) // 2)


class ServerArgumentError(ValueError):
    """An argument of :func:`run_server` that :func:`~lstm_interp.serve.create_app` refused (a threshold, a limit, a
    corpus file that is not UTF-8, an atlas of another model), before anything is bound or served."""


def run_server(
    model: str | os.PathLike,
    *,
    corpus_files: Sequence[str | os.PathLike] = (),
    thresholds: Sequence[float] = (0.3,),
    atlas: str | os.PathLike | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_hosts: Sequence[str] = (),
    request_timeout_s: float = 10.0,
    queue_timeout_s: float = 30.0,
    max_request_cost: float | None = None,
    threads: int = DEFAULT_THREADS,
    open_browser: bool = False,
    out: TextIO | None = None,
    notices: TextIO | None = None,
) -> None:
    """Serve the live explorer of ``model`` on ``host:port`` until Ctrl+C or SIGTERM.

    The model is opened with :func:`~lstm_interp.load_pretrained` on a one-thread executor, where the corpus indexes
    are built and every request's work is done (torch is fastest when all its work stays on one thread;
    :func:`~lstm_interp.serve.create_app` says more). Once the socket is bound, one line ``Serving MODEL at URL
    (Ctrl+C to stop)`` is written to ``out``. While it runs, SIGTERM (and SIGINT once serving) is caught on the main
    thread, and the handlers are restored on the way out.

    Args:
        model: anything :func:`~lstm_interp.load_pretrained` opens: a pretrained name, a folder, a ``.ckpt``, a repo id.
        corpus_files: UTF-8 files to match selections in, indexed in the background (or opened from the index cache)
            at each of ``thresholds``.
        thresholds: the thresholds the corpora are indexed at (LSTMVis's default 0.3).
        atlas: a folder ``lstm-interp atlas`` wrote for this model: the page shows the card of the unit it shows.
        host: the address to listen on; one that is not loopback gets a warning on ``notices``, since anyone who
            can reach it can run the model.
        port: the port; 0 picks a free one (the URL written to ``out`` names it).
        allow_hosts: more names a request's ``Host`` header may carry, besides the bound address (and the loopback
            names when it is loopback): :func:`~lstm_interp.serve.app.allowed_hosts`.
        request_timeout_s, queue_timeout_s, max_request_cost: each request's limits, as
            :func:`~lstm_interp.serve.create_app` takes them.
        threads: torch's CPU threads, for the whole process (``torch.set_num_threads``); default half the cores.
        open_browser: open the page in a web browser once the server listens.
        out: where the ``Serving`` line goes (default ``sys.stdout``).
        notices: where the indexing notice and the non-loopback warning go (default ``sys.stderr``).

    Returns:
        ``None``, once stopped by SIGTERM (or by uvicorn's own exit), after the clean-up: queued work cancelled, the
        model's thread shut down, the signal handlers restored.

    Raises:
        KeyboardInterrupt: on Ctrl+C, whenever it comes (loading, indexing or serving), after the same clean-up.
        ServerArgumentError: ``create_app`` refused an argument (a bad or repeated threshold, a limit that is not a
            positive finite number, a corpus file that is not UTF-8, an atlas of another model).
        OSError: the ``serve`` extra (starlette, uvicorn) is not installed, or ``host:port`` cannot be bound (in
            use, no such address).
        FileNotFoundError, ValueError: ``model`` cannot be opened (:func:`~lstm_interp.load_pretrained`).

    Example::

        >>> run_server("novel", corpus_files=["chapter1.txt"], port=0)  # doctest: +SKIP
        Serving novel at http://127.0.0.1:40613/ (Ctrl+C to stop)
    """
    out = sys.stdout if out is None else out
    notices = sys.stderr if notices is None else notices
    # SIGTERM's default action ends the process at once, skipping the clean-up: turn it into an exception, as
    # Python does SIGINT (signal handlers can only be set on the main thread).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    worker = None
    try:
        try:
            import uvicorn

            from lstm_interp.serve.app import allowed_hosts, create_app
        except ImportError as err:
            missing = err.name or str(err)
            raise OSError(f"{missing} is not installed; install the extra: pip install 'lstm-interp[serve]'") from err
        import torch

        from lstm_interp.hub.load_pretrained import load_pretrained

        torch.set_num_threads(threads)
        # The model is loaded, indexed and run on one thread: torch is fastest when all its work stays on one.
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstm-interp")
        loaded = worker.submit(load_pretrained, model).result()
        if corpus_files:
            shown = ", ".join(f"{t:g}" for t in thresholds)
            print(f"indexing {len(corpus_files)} corpus file(s) at threshold {shown} in the background (or opening "
                  "them from the index cache); select & match say how far it is", file=notices, flush=True)  # fmt: skip
        try:
            app = create_app(loaded, corpus_files=corpus_files, thresholds=thresholds, executor=worker,
                             index_in_background=True, allowed_hosts=allowed_hosts(host, allow_hosts),
                             request_timeout_s=request_timeout_s, queue_timeout_s=queue_timeout_s,
                             max_request_cost=max_request_cost, atlas=atlas)  # fmt: skip
        except ValueError as err:
            raise ServerArgumentError(str(err)) from err
        sock = _bind(host, port)
        url = _url(host, sock.getsockname()[1])
        if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
            # The API runs the model on whatever it is sent, without authentication: say so before anyone can reach it.
            print(f"warning: listening on {host}, not loopback: anyone who can reach this port can use the model",
                  file=notices, flush=True)  # fmt: skip
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        _serve(server, sock, url, f"Serving {model} at {url} (Ctrl+C to stop)", out, open_browser=open_browser)
    except _Terminated:
        return
    finally:
        if worker is not None:
            worker.shutdown(wait=False, cancel_futures=True)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(Exception):
    """SIGTERM arrived (see run_server)."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``: bound here rather than by uvicorn, so that with port 0 the port is known (and
    printed) before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _serve(
    server: uvicorn.Server, sock: socket.socket, url: str, serving: str, out: TextIO, *, open_browser: bool
) -> None:
    """Run the uvicorn ``server`` on ``sock`` once ``serving`` is written to ``out``; re-raise the stop signal."""
    # A Ctrl+C between "Serving" and uvicorn's own handlers (set inside server.run, after its event loop is made)
    # would raise KeyboardInterrupt inside asyncio's set-up, with a traceback. So the signals are caught from here
    # on: one that comes before uvicorn listens asks it to stop at once (should_exit, checked after its start-up);
    # uvicorn restores these handlers when it stops and raises to them the signals it caught meanwhile.
    stops: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stops.append(signum)
        server.should_exit = True

    caught = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {signum: signal.signal(signum, stop) for signum in caught}
    print(serving, file=out, flush=True)
    if open_browser:
        threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signal.SIGINT in stops:
        raise KeyboardInterrupt  # Ctrl+C is the caller's to report (lstm-interp serve: one line, status 130)
    if signal.SIGTERM in stops:
        raise _Terminated  # run_server returns, quietly


def _open_when_started(server: uvicorn.Server, url: str, timeout: float = 30.0) -> None:
    # The browser's first request must find the socket listening, which uvicorn does only inside server.run().
    deadline = time.monotonic() + timeout
    while not getattr(server, "started", False) and time.monotonic() < deadline:
        time.sleep(0.05)
    webbrowser.open(url)
