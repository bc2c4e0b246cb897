"""``lstm-interp push MODEL REPO_ID``: :func:`~lstm_interp.hub.push_to_hub`, a model and its card in one commit.

The token comes from ``HF_TOKEN`` or ``hf auth login``; the Hub from ``HF_ENDPOINT`` (default huggingface.co).
"""

from __future__ import annotations

import argparse

from lstm_interp.cli._arguments import add_model_argument

DTYPES = ("float16", "bfloat16", "float32")


def build_parser(prog: str) -> argparse.ArgumentParser:
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


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.repo_id.count("/") != 1 or args.repo_id.startswith("/") or args.repo_id.endswith("/"):
        parser.error(f"argument REPO_ID: expected 'org/name', got {args.repo_id!r}")
    import torch

    from lstm_interp.hub.push_to_hub import push_to_hub

    # push_to_hub opens MODEL with load_pretrained (a folder goes with its results.json and images).
    print(push_to_hub(args.model, args.repo_id, private=args.private, revision=args.revision,
                      commit_message=args.commit_message, create_pr=args.create_pr,
                      dtype=getattr(torch, args.dtype) if args.dtype else None))  # fmt: skip
    return 0
