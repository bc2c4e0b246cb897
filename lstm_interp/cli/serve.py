"""``lstm-interp serve MODEL``: the live explorer, :func:`~lstm_interp.serve.run_server.run_server` on a local page."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_options,
    command_parser,
    existing_file,
    number_type,
    positive_float,
    positive_int,
)
from lstm_interp.serve.run_server import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_THREADS, ServerArgumentError, run_server

port_number = number_type(int, "a port 0 .. 65535", lambda value: 0 <= value <= 65535)


def serve_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Serve a live explorer: type a text, see each unit's activations, select a span and match it.",
        "lstm-interp serve novel --corpus chapter1.txt --open",
    )
    add = parser.add_argument
    add("--corpus", type=existing_file, nargs="+", action="extend", default=[], metavar="FILE",
        help="UTF-8 text files to match selections in (indexed at start-up, at each --threshold)")  # fmt: skip
    add("--threshold", type=float, nargs="+", default=[0.3], metavar="THETA", help="thresholds to index the corpora "
        "at, for matching (default 0.3, LSTMVis's); each costs one more index")  # fmt: skip
    add("--atlas", type=Path, default=None, metavar="DIR", help="a unit atlas of this model (lstm-interp atlas MODEL "
        "CORPUS --out DIR): the page shows each unit's card")  # fmt: skip
    add("--allow-host", action="append", default=[], metavar="NAME",
        help="also accept requests whose Host header names NAME (a deliberate public bind's DNS name); by default "
        "only the bound address, plus localhost/127.0.0.1/[::1] when it is loopback")  # fmt: skip
    add("--open", action="store_true", help="open the page in a web browser once serving")
    add_options(
        parser,
        ("--host", str, DEFAULT_HOST, "HOST", "the address to listen on"),
        ("--port", port_number, DEFAULT_PORT, "N", "the port; 0 picks a free one, printed once bound"),
        ("--request-timeout", positive_float, 10, "SECONDS", "the longest a request's work may run once started; "
         "past it the request gets 504 and its work stops"),
        ("--queue-timeout", positive_float, 30, "SECONDS", "the longest a request may wait behind others for the "
         "model; past it, 503"),
        ("--max-request-cost", positive_float, None, "UNITS", "refuse (413) a request whose estimated cost is over "
         "UNITS, about a millisecond of the reference model's work each (default 500 per second of --request-timeout)"),
    )  # fmt: skip
    add("--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N", help="torch's CPU threads for the "
        "page's traces and for a background index build, each (default: half the cores; more slows both)")  # fmt: skip
    return parser


def run_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Serve until stopped: SIGTERM returns 0 quietly, Ctrl+C 130 with one line (``cli/main.py``)."""
    if args.atlas is not None and not (args.atlas / "atlas.json").is_file():
        parser.error(f"argument --atlas: {str(args.atlas)!r} holds no atlas.json; make one with lstm-interp atlas")
    try:
        run_server(args.model, corpus_files=args.corpus, thresholds=args.threshold, atlas=args.atlas, host=args.host,
                   port=args.port, allow_hosts=args.allow_host, request_timeout_s=args.request_timeout,
                   queue_timeout_s=args.queue_timeout, max_request_cost=args.max_request_cost, threads=args.threads,
                   open_browser=args.open)  # fmt: skip
    except ServerArgumentError as err:
        parser.error(str(err))
    return 0
