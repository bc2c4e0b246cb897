"""``lstm-interp sample MODEL``: generate text from a model and print it as it is sampled.

MODEL is anything :func:`lstm_interp.load_pretrained` opens (a pretrained name, a ``save_pretrained`` folder, a
Lightning ``.ckpt``, a Hub repo id); nothing here imports Lightning, so sampling starts quickly.

The text is streamed to stdout (:meth:`~lstm_interp.CharLSTM.generate_stream`), flushed at every newline and every
:data:`FLUSH_CHARS` characters, so a long run shows its text at once and never holds it all in memory. A sample of
:data:`PROGRESS_MIN_LENGTH` characters or more also reports its progress on stderr at every 10%, as
``sample: 10,000 / 100,000 characters (9,812/s)``. ``--length`` above
:data:`~lstm_interp.cli._arguments.MAX_LENGTH` (one million characters per sample, the cap ``steer`` shares) is
refused with status 2 before the model is opened, unless ``--max-length`` raises the limit. A reader that closes the
pipe (``| head``) ends the command quietly with status 141 (128 + SIGPIPE, as a shell reports it), and
Ctrl-C with status 130, neither with a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

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

DEFAULT_PROMPT = "\n"
# Samples at least this long report progress on stderr, at each tenth of the length.
PROGRESS_MIN_LENGTH = 10_000
PROGRESS_STEPS = 10
# stdout is flushed at every newline and at least every FLUSH_CHARS characters, so a reader sees the text as it comes.
FLUSH_CHARS = 256
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
    parser.add_argument(
        "--prompt", default=None, help="text to start from (default: a newline, or the first character it knows)"
    )
    parser.add_argument(
        "--length",
        type=non_negative_int,
        default=500,
        help=f"characters to generate per temperature (default 500, at most --max-length: {MAX_LENGTH:,})",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=MAX_LENGTH,
        metavar="N",
        help=f"the largest --length accepted (default {MAX_LENGTH:,}); raise it for a longer sample",
    )
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
    The text is written as it is sampled; see the module docstring for the length limit, the progress lines on
    stderr and the exit statuses of a closed pipe (141) and Ctrl-C (130).

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
        return _sample(parser, args)
    except KeyboardInterrupt:
        # Ctrl-C is how a user stops a sample they have read enough of: no traceback, the shell's status for it.
        _flush_quietly(sys.stdout)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader has gone (`| head`). Python's documented recipe: point stdout at devnull, so that the flush at
        # interpreter exit does not raise a second BrokenPipeError ("Exception ignored ...") on the way out.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _sample(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Open the model and stream one sample per temperature to stdout."""
    model = load_pretrained(args.model)
    vocab = model._require_vocab()
    prompt = args.prompt
    if prompt is None:
        prompt = DEFAULT_PROMPT if DEFAULT_PROMPT in vocab else vocab.chars[0]
    elif prompt == "":
        parser.error("argument --prompt: must not be empty, got ''")
    out = sys.stdout
    for i, temp in enumerate(args.temperature):
        # Called before the header is written: generate_stream checks the prompt at once, so a prompt outside the
        # vocabulary fails with nothing printed.
        chars = model.generate_stream(prompt, args.length, temperature=temp, top_k=args.top_k, seed=args.seed)
        if len(args.temperature) > 1:
            if i:
                out.write("\n")
            out.write(f"----- temperature {temp:g} -----\n")
        # A prompt the user typed is part of what they want to read; the default one is only a starting point.
        if args.prompt is not None:
            out.write(prompt)
        _write_stream(chars, args.length, out, sys.stderr)
        out.write("\n")
        out.flush()
    return 0


def _write_stream(chars: Iterator[str], length: int, out: TextIO, progress: TextIO) -> None:
    """Write the ``length`` characters of ``chars`` to ``out`` as they come, with progress lines on ``progress``.

    ``out`` is flushed at every newline and every :data:`FLUSH_CHARS` characters; with ``length`` >=
    :data:`PROGRESS_MIN_LENGTH`, one line goes to ``progress`` at each tenth of ``length`` (always the same counts).
    """
    milestones = (
        {length * step // PROGRESS_STEPS for step in range(1, PROGRESS_STEPS + 1)}
        if length >= PROGRESS_MIN_LENGTH
        else set()
    )
    pending: list[str] = []
    start = time.perf_counter()
    for count, char in enumerate(chars, start=1):
        pending.append(char)
        at_milestone = count in milestones
        if char == "\n" or len(pending) >= FLUSH_CHARS or at_milestone:
            out.write("".join(pending))
            out.flush()
            pending.clear()
        if at_milestone:
            rate = count / max(time.perf_counter() - start, 1e-9)
            print(f"sample: {count:,} / {length:,} characters ({rate:,.0f}/s)", file=progress, flush=True)
    out.write("".join(pending))


def _flush_quietly(stream: TextIO) -> None:
    """Flush ``stream``, ignoring a reader that has gone: the text sampled before Ctrl-C is still the user's."""
    try:
        stream.flush()
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    """Point the process's stdout (file descriptor) at devnull, so that nothing more written to it can fail."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a StringIO in tests, a closed stream): nothing will be flushed to a pipe at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)
