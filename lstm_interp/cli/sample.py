"""``lstm-interp sample MODEL``: :func:`~lstm_interp.models.sample_stream.write_samples` on stdout, as it samples."""

from __future__ import annotations

import argparse
import sys

from lstm_interp.cli._arguments import (
    MAX_LENGTH,
    add_model_argument,
    check_sampled_length,
    non_negative_int,
    positive_int,
    temperature,
)

UNKNOWN_CHAR_HINT = "Use only characters the model knows in --prompt."


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate text from a trained character-level model and print it.",
        epilog="Example: lstm-interp sample lstm_interp_demo/model --prompt 'The ' --temperature 0.5 1.0 --seed 0",
    )
    add_model_argument(parser)
    add = parser.add_argument
    add("--prompt", default=None, help="text to start from (default: a newline, or the first character it knows)")
    add("--length", type=non_negative_int, default=500,
        help=f"characters to generate per temperature (default 500, at most --max-length: {MAX_LENGTH:,})")  # fmt: skip
    add("--max-length", type=positive_int, default=MAX_LENGTH, metavar="N",
        help=f"the largest --length accepted (default {MAX_LENGTH:,}); raise it for a longer sample")  # fmt: skip
    add("--temperature", type=temperature, nargs="+", default=[1.0], metavar="T",
        help="softmax temperature; several give one sample each (default 1.0; 0 = most likely character)")  # fmt: skip
    parser.add_argument("--top-k", type=positive_int, default=None, metavar="K", help="sample among the K most likely")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a reproducible sample")
    return parser


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    # Before the model is opened: a length that would run for hours is refused at once, not after a download.
    check_sampled_length(parser, "--length", args.length, args.max_length, unit="characters per sample")
    if args.prompt == "":
        parser.error("argument --prompt: must not be empty, got ''")
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.models.sample_stream import write_samples

    write_samples(load_pretrained(args.model), args.length, sys.stdout, prompt=args.prompt,
                  temperatures=args.temperature, top_k=args.top_k, seed=args.seed, progress=sys.stderr)  # fmt: skip
    return 0
