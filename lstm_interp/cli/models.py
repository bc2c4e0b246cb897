"""``lstm-interp sample``, ``trace`` and ``push``: a model's text, its activations, its upload to the Hub.

They call :func:`~lstm_interp.models.sample_stream.write_samples`, :func:`~lstm_interp.trace` and
:func:`~lstm_interp.hub.push_to_hub` (token from ``HF_TOKEN`` or ``hf auth login``); none imports Lightning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstm_interp.cli._arguments import (
    MAX_LENGTH,
    add_options,
    add_skip_unknown_argument,
    check_sampled_length,
    command_parser,
    existing_file,
    non_empty,
    non_negative_int,
    positive_int,
    read_text_file,
    temperature,
)

DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_CHUNK_SIZE = 2048  # lstm_interp.tracing.trace.DEFAULT_CHUNK_SIZE, without importing torch for --help


def sample_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Generate text from a trained character-level model and print it.",
        "lstm-interp sample lstm_interp_demo/model --prompt 'The ' --temperature 0.5 1.0 --seed 0",
    )
    add_options(
        parser,
        ("--prompt", non_empty, None, None, "text to start from (default: a newline, or the first character it knows)"),
        ("--length", non_negative_int, 500, None, "characters to generate per temperature, at most --max-length"),
        ("--max-length", positive_int, MAX_LENGTH, "N", "the largest --length accepted; raise it for a longer sample"),
        ("--temperature", temperature, [1.0], "T", "softmax temperature, 0 for the most likely character; several "
         "give one sample each", {"nargs": "+"}),
        ("--top-k", positive_int, None, "K", "sample among the K most likely"),
        ("--seed", int, None, None, "random seed, for a reproducible sample"),
    )  # fmt: skip
    return parser


def run_sample(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    # Before the model is opened: a length that would run for hours is refused at once, not after a download.
    check_sampled_length(parser, "--length", args.length, args.max_length, unit="characters per sample")
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.models.sample_stream import write_samples

    write_samples(load_pretrained(args.model), args.length, sys.stdout, prompt=args.prompt,
                  temperatures=args.temperature, top_k=args.top_k, seed=args.seed, progress=sys.stderr)  # fmt: skip
    return 0


def trace_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Record every gate, cell and hidden state of a model over a text, into a .safetensors file.",
        "lstm-interp trace lstm_interp_demo/model --file chapter1.txt --output chapter1.safetensors --names "
        "'layers.*.cell' 'layers.*.forget_gate'. Read it back with lstm_interp.Trace.load(path).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    add_options(source, ("--text", non_empty, None, None, "the text to trace"),
                ("--file", existing_file, None, "PATH", "a UTF-8 text file to trace"))  # fmt: skip
    add = parser.add_argument
    add("--output", "-o", type=Path, required=True, metavar="OUT", help="the .safetensors to write")
    add("--names", nargs="+", metavar="PATTERN", default=None,
        help="keep only these activations: names or globs such as 'layers.*.cell' (default: all)")  # fmt: skip
    add_options(
        parser,
        ("--dtype", str, "float32", None, "storage dtype", {"choices": DTYPES}),
        ("--chunk-size", positive_int, DEFAULT_CHUNK_SIZE, "N", "characters per chunk; memory is the trace plus one "
         "chunk"),
    )  # fmt: skip
    add_skip_unknown_argument(parser)
    return parser


def run_trace(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.output.is_dir():
        parser.error(f"argument --output: {str(args.output)!r} is a folder; give a file name ending in .safetensors")
    text = args.text if args.text is not None else read_text_file(parser, args.file, "--file")
    import torch

    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.tracing import trace

    result = trace(load_pretrained(args.model), text, names_filter=args.names, dtype=getattr(torch, args.dtype),
                   chunk_size=args.chunk_size, on_unknown=args.on_unknown)  # fmt: skip
    result.save(args.output)
    print(f"Wrote {args.output} ({args.output.stat().st_size / 2**20:.2f} MiB): {result.describe()}")
    return 0


def push_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Upload a model and a fresh model card to a Hugging Face Hub repo, in one commit.",
        "lstm-interp push model_cards/novel me/char-lstm-war-and-peace --private --dtype float16",
    )
    add = parser.add_argument
    add("repo_id", metavar="REPO_ID", help="the Hub repo, 'org/name' (created if missing)")
    add("--private", action="store_true", help="create the repo private (if it does not exist yet)")
    add("--revision", metavar="R", default=None, help="branch to commit to (default main)")
    add("--commit-message", metavar="M", default=None, help="summary line of the commit")
    add("--create-pr", action="store_true", help="open a pull request instead of committing")
    add("--dtype", choices=DTYPES, default=None, help="store the weights in this dtype (default: as they are)")
    return parser


def run_push(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.repo_id.count("/") != 1 or args.repo_id.startswith("/") or args.repo_id.endswith("/"):
        parser.error(f"argument REPO_ID: expected 'org/name', got {args.repo_id!r}")
    import torch

    from lstm_interp.hub.push_to_hub import push_to_hub

    # push_to_hub opens MODEL with load_pretrained (a folder goes with its results.json and images).
    print(push_to_hub(args.model, args.repo_id, private=args.private, revision=args.revision,
                      commit_message=args.commit_message, create_pr=args.create_pr,
                      dtype=getattr(torch, args.dtype) if args.dtype else None))  # fmt: skip
    return 0
