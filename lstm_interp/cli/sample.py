"""``lstm-interp sample MODEL``: generate text from a model and print it as it is sampled.

Parses the command line and calls :func:`~lstm_interp.models.sample_stream.write_samples` on stdout (progress on
stderr); nothing here imports Lightning, so sampling starts quickly. ``--length`` above
:data:`~lstm_interp.cli._arguments.MAX_LENGTH` is refused with status 2 before the model is opened, unless
``--max-length`` raises the limit. A reader that closes the pipe (``| head``) ends the command quietly with status
141 (128 + SIGPIPE, as a shell reports it), and Ctrl-C with status 130, neither with a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lstm_interp.cli._arguments import (
    MAX_LENGTH,
    add_model_argument,
    check_model_argument,
    check_sampled_length,
    non_negative_int,
    positive_int,
    temperature,
)
from lstm_interp.hub.load_pretrained import load_pretrained
from lstm_interp.models.sample_stream import flush_quietly, silence_stdout, write_samples

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader has gone


def build_parser(prog: str = "lstm-interp sample") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp sample``."""
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


def main(argv: Sequence[str], *, prog: str = "lstm-interp sample") -> int:
    """Run ``lstm-interp sample`` with ``argv`` (the arguments after ``sample``); returns the exit status.

    With one temperature the text is printed alone (ready to pipe); with several, each sample gets a header line.

    Raises:
        FileNotFoundError, ValueError: for a broken model or a prompt outside its vocabulary (the CLI prints
            them in one line and exits with status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    # Before the model is opened: a length that would run for hours is refused at once, not after a download.
    check_sampled_length(parser, "--length", args.length, args.max_length, unit="characters per sample")
    check_model_argument(parser, args.model)
    try:
        model = load_pretrained(args.model)
        if args.prompt == "":
            parser.error("argument --prompt: must not be empty, got ''")
        write_samples(model, args.length, sys.stdout, prompt=args.prompt, temperatures=args.temperature,
                      top_k=args.top_k, seed=args.seed, progress=sys.stderr)  # fmt: skip
        return 0
    except KeyboardInterrupt:
        # Ctrl-C is how a user stops a sample they have read enough of: no traceback, the shell's status for it.
        flush_quietly(sys.stdout)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()  # the reader has gone (`| head`): nothing more written to stdout may fail at exit
        return EXIT_BROKEN_PIPE
