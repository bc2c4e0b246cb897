"""``lstm-interp push MODEL REPO_ID``: publish a model to the Hugging Face Hub in one commit.

MODEL is anything :func:`lstm_interp.load_pretrained` opens. The commit holds the model's three files and a model
card rendered from them (see :func:`lstm_interp.hub.push_to_hub`); a ``save_pretrained`` folder is pushed as a
folder, so its ``results.json`` and ``images/*.png`` go too and the card shows them. The token comes from
``HF_TOKEN`` or ``hf auth login``; the Hub from ``HF_ENDPOINT`` (default huggingface.co).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from lstm_interp.cli._arguments import add_model_argument, check_model_argument
from lstm_interp.hub.push_to_hub import push_to_hub

DTYPES = ("float16", "bfloat16", "float32")


def build_parser(prog: str = "lstm-interp push") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp push``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Upload a model and a fresh model card to a Hugging Face Hub repo, in one commit.",
        epilog="Example: lstm-interp push model_cards/novel me/char-lstm-war-and-peace --private --dtype float16",
    )
    add_model_argument(parser)
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub repo, 'org/name' (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist yet)")
    parser.add_argument("--revision", metavar="R", default=None, help="branch to commit to (default main)")
    parser.add_argument("--commit-message", metavar="M", default=None, help="summary line of the commit")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument(
        "--dtype", choices=DTYPES, default=None, help="store the weights in this dtype (default: as they are)"
    )
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp push") -> int:
    """Run ``lstm-interp push`` with ``argv`` (the arguments after ``push``); prints the commit URL.

    Raises:
        FileNotFoundError, ValueError: for a MODEL that cannot be opened; ``HfHubHTTPError`` (an
            ``OSError``) when the Hub refuses (the CLI prints them in one line and exits with status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    if args.repo_id.count("/") != 1 or args.repo_id.startswith("/") or args.repo_id.endswith("/"):
        parser.error(f"argument REPO_ID: expected 'org/name', got {args.repo_id!r}")
    # push_to_hub opens MODEL with load_pretrained (a folder goes with its results.json and images).
    url = push_to_hub(
        args.model,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
        dtype=getattr(torch, args.dtype) if args.dtype else None,
    )
    print(url)
    return 0
