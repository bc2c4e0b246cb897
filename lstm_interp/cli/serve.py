"""``lstm-interp serve MODEL``: the live explorer, a local web page that traces what you type.

Each ``--corpus FILE`` is indexed when the server starts, so that a span brushed on the page can be matched in it
(LSTMVis's select & match); with ``--atlas DIR`` (a folder ``lstm-interp atlas`` wrote for this model) the page shows
the atlas card of the unit it shows. It listens on 127.0.0.1 by default: it runs a model on whatever it is sent, and
is meant for one user on their own machine. Each request is bounded: by its estimated cost before it starts
(``--max-request-cost``) and by a deadline once it runs (``--request-timeout``); see ``docs/explorer_api.md``. The
server itself is :func:`~lstm_interp.serve.run_server.run_server`'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_model_argument,
    check_corpus_files,
    check_model_argument,
    non_negative_int,
    positive_float,
    positive_int,
)
from lstm_interp.serve.run_server import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_THREADS, ServerArgumentError, run_server

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
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"the address to listen on (default {DEFAULT_HOST})")
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


def main(argv: Sequence[str], *, prog: str = "lstm-interp serve") -> int:
    """Run ``lstm-interp serve`` with ``argv`` (the arguments after ``serve``) until stopped.

    Returns:
        0 when stopped by SIGTERM, quietly; :data:`INTERRUPTED` (130) on Ctrl+C, with one line; either way with no
        traceback, whether the server was loading, indexing or serving, and after
        :func:`~lstm_interp.serve.run_server.run_server`'s clean-up; 2 for bad arguments.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        check_model_argument(parser, args.model)  # imports torch: a Ctrl+C meanwhile is an interruption too
        check_corpus_files(parser, args.corpus, "--corpus")
        if args.atlas is not None and not (args.atlas / "atlas.json").is_file():
            parser.error(f"argument --atlas: {str(args.atlas)!r} holds no atlas.json; make one with lstm-interp atlas")
        run_server(args.model, corpus_files=args.corpus, thresholds=args.threshold, atlas=args.atlas, host=args.host,
                   port=args.port, allow_hosts=args.allow_host, request_timeout_s=args.request_timeout,
                   queue_timeout_s=args.queue_timeout, max_request_cost=args.max_request_cost, threads=args.threads,
                   open_browser=args.open)  # fmt: skip
    except ServerArgumentError as err:
        parser.error(str(err))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED
    return 0
