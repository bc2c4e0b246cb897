"""``lstm-interp serve MODEL``: the live explorer, a local web page that traces what you type.

MODEL is anything :func:`lstm_interp.load_pretrained` opens. Each ``--corpus FILE`` is indexed when the server
starts, so that a span brushed on the page can be matched in it (LSTMVis's select & match); with ``--atlas DIR`` (a
folder ``lstm-interp atlas`` wrote for this model) the page shows the atlas card of the unit it shows. It listens on
127.0.0.1 by default: it runs a model on whatever it is sent, and is meant for one user on their own machine.
Each request is bounded: by its estimated cost before it starts (``--max-request-cost``) and by a deadline once it
runs (``--request-timeout``); see ``docs/explorer_api.md``. Ctrl+C and SIGTERM stop it without a traceback.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_model_argument,
    check_corpus_files,
    check_model_argument,
    non_negative_int,
    positive_float,
    positive_int,
)
from lstm_interp.hub.load_pretrained import load_pretrained

DEFAULT_PORT = 8000
# Half the cores: the page's requests run on one thread and a corpus index builds on another, each with a team of
# torch threads; two teams of all the cores (torch's default) oversubscribe them and slow both (RESULTS.md, "Explorer
# start-up").
DEFAULT_THREADS = max(1, (os.cpu_count() or 2) // 2)
INTERRUPTED = 130  # the shell's status for a command ended by SIGINT (128 + 2)


def port_number(text: str) -> int:
    """An argparse type: a TCP port 0 .. 65535 (0: any free port)."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0 .. 65535, got {text!r}")
    return value


def build_parser(prog: str = "lstm-interp serve") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp serve``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a live explorer: type a text, see each unit's activations, select a span and match it.",
        epilog="Example: lstm-interp serve novel --corpus chapter1.txt --open",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--corpus", type=Path, nargs="+", action="extend", default=[], metavar="FILE",
        help="UTF-8 text files to match selections in (indexed at start-up, at each --threshold)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", type=float, nargs="+", default=[0.3], metavar="THETA",
        help="thresholds to index the corpora at, for matching (default 0.3, LSTMVis's); each costs one more index",
    )  # fmt: skip
    parser.add_argument(
        "--atlas", type=Path, default=None, metavar="DIR",
        help="a unit atlas of this model (lstm-interp atlas MODEL CORPUS --out DIR): the page shows each unit's card",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, metavar="N",
        help=f"the port (default {DEFAULT_PORT}; 0 picks a free one, printed once bound)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="also accept requests whose Host header names NAME (a deliberate public bind's DNS name); by default "
        "only the bound address, plus localhost/127.0.0.1/[::1] when it is loopback",
    )  # fmt: skip
    parser.add_argument(
        "--request-timeout", type=positive_float, default=10.0, metavar="SECONDS",
        help="the longest a request's work may run once started; past it the request gets 504 and its work stops "
        "(default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--queue-timeout", type=positive_float, default=30.0, metavar="SECONDS",
        help="the longest a request may wait behind others for the model; past it, 503 (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--max-request-cost", type=positive_float, default=None, metavar="UNITS",
        help="refuse (413) a request whose estimated cost is over UNITS, about a millisecond of the reference "
        "model's work each (default 500 per second of --request-timeout)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N",
        help="torch's CPU threads (default: half the cores): the page's traces and a background index build each run "
        "a team of this many, and more teams than cores slow both many times over",
    )  # fmt: skip
    parser.add_argument("--open", action="store_true", help="open the page in a web browser once serving")
    return parser


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def main(argv: Sequence[str], *, prog: str = "lstm-interp serve") -> int:
    """Run ``lstm-interp serve`` with ``argv`` (the arguments after ``serve``) until stopped.

    Returns:
        0 when stopped by SIGTERM, quietly; :data:`INTERRUPTED` (130) on Ctrl+C, with one line; either way with no
        traceback, whether the server was loading, indexing or serving, and after the normal exit's clean-up (the
        temporary index folders are removed); 2 for bad arguments.
    """
    # SIGTERM's default action ends the process at once, skipping the clean-up: turn it into an exception, as
    # Python does SIGINT (signal handlers can only be set on the main thread).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return _serve(argv, prog)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED
    except _Terminated:
        return 0
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(Exception):
    """SIGTERM arrived (see main)."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _serve(argv: Sequence[str], prog: str) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    check_corpus_files(parser, args.corpus, "--corpus")
    if args.atlas is not None and not (args.atlas / "atlas.json").is_file():
        parser.error(f"argument --atlas: {str(args.atlas)!r} holds no atlas.json; make one with lstm-interp atlas")
    try:
        import uvicorn

        from lstm_interp.serve.app import allowed_hosts, create_app
    except ImportError as err:
        missing = err.name or str(err)
        raise OSError(f"{missing} is not installed; install the extra: pip install 'lstm-interp[serve]'") from err

    import torch

    torch.set_num_threads(args.threads)
    # The model is loaded, indexed and run on one thread: torch is fastest when all its work stays on one (create_app).
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstm-interp")
    model = worker.submit(load_pretrained, args.model).result()
    if args.corpus:
        thresholds = ", ".join(f"{t:g}" for t in args.threshold)
        print(f"indexing {len(args.corpus)} corpus file(s) at threshold {thresholds} in the background (or opening "
              "them from the index cache); select & match say how far it is", file=sys.stderr, flush=True)  # fmt: skip
    try:
        app = create_app(model, corpus_files=args.corpus, thresholds=args.threshold, executor=worker,
                         index_in_background=True,
                         allowed_hosts=allowed_hosts(args.host, args.allow_host),
                         request_timeout_s=args.request_timeout, queue_timeout_s=args.queue_timeout,
                         max_request_cost=args.max_request_cost, atlas=args.atlas)  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    # Bound here rather than by uvicorn, so that with --port 0 the port is known (and printed) before serving.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    url = _url(args.host, sock.getsockname()[1])
    if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
        # The API runs the model on whatever it is sent, without authentication: say so before anyone can reach it.
        print(f"warning: listening on {args.host}, not loopback: anyone who can reach this port can use the model",
              file=sys.stderr, flush=True)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
    print(f"Serving {args.model} at {url} (Ctrl+C to stop)", flush=True)
    if args.open:
        threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        worker.shutdown(wait=False, cancel_futures=True)
    if signal.SIGINT in stops:
        raise KeyboardInterrupt  # main prints one line and returns 130
    if signal.SIGTERM in stops:
        raise _Terminated  # main returns 0, quietly
    return 0


def _open_when_started(server: object, url: str, timeout: float = 30.0) -> None:
    # The browser's first request must find the socket listening, which uvicorn does only inside server.run().
    deadline = time.monotonic() + timeout
    while not getattr(server, "started", False) and time.monotonic() < deadline:
        time.sleep(0.05)
    webbrowser.open(url)
