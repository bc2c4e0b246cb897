"""``lstm-interp sample MODEL``: generate text from a model and print it.

MODEL is anything :func:`lstm_interp.load_pretrained` opens (a pretrained name, a ``save_pretrained`` folder, a
Lightning ``.ckpt``, a Hub repo id); nothing here imports Lightning, so sampling starts quickly.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lstm_interp.cli._arguments import (
    add_model_argument,
    check_model_argument,
    non_negative_int,
    positive_int,
    temperature,
)
from lstm_interp.hub.load_pretrained import load_pretrained

DEFAULT_PROMPT = "\n"


def build_parser(prog: str = "lstm-interp sample") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp sample``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate text from a trained character-level model and print it.",
        epilog="Example: lstm-interp sample lstm_interp_demo/model --prompt 'The ' --temperature 0.5 1.0 --seed 0",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--prompt", default=None, help="text to start from (default: a newline, or the first character it knows)"
    )
    parser.add_argument("--length", type=non_negative_int, default=500, help="characters to generate (default 500)")
    parser.add_argument(
        "--temperature",
        type=temperature,
        nargs="+",
        default=[1.0],
        metavar="T",
        help="softmax temperature; several give one sample each (default 1.0; 0 = most likely character)",
    )
    parser.add_argument("--top-k", type=positive_int, default=None, metavar="K", help="sample among the K most likely")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a reproducible sample")
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp sample") -> int:
    """Run ``lstm-interp sample`` with ``argv`` (the arguments after ``sample``); returns the exit status.

    With one temperature the text is printed alone (ready to pipe); with several, each sample gets a header line.

    Raises:
        FileNotFoundError, ValueError: for a broken model or a prompt outside its vocabulary (the CLI prints
            them in one line and exits with status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    model = load_pretrained(args.model)
    vocab = model._require_vocab()
    prompt = args.prompt
    if prompt is None:
        prompt = DEFAULT_PROMPT if DEFAULT_PROMPT in vocab else vocab.chars[0]
    elif prompt == "":
        parser.error("argument --prompt: must not be empty, got ''")
    for i, temp in enumerate(args.temperature):
        # A prompt the user typed is part of what they want to read; the default one is only a starting point.
        text = model.generate(
            prompt,
            args.length,
            temperature=temp,
            top_k=args.top_k,
            seed=args.seed,
            include_prompt=args.prompt is not None,
        )
        if len(args.temperature) > 1:
            if i:
                print()
            print(f"----- temperature {temp:g} -----")
        print(text)
    return 0
