"""``write_samples``: samples of a :class:`~lstm_interp.CharLSTM` written to a text stream as they are drawn.

What ``lstm-interp sample`` does once its arguments are parsed. Each sample comes from
:meth:`~lstm_interp.CharLSTM.generate_stream`, so a long one is never held in memory, and is written as it comes:

- the stream is flushed at every newline and at least every :data:`FLUSH_CHARS` characters, so a reader (a terminal,
  ``| less``) sees the text at once;
- a sample of :data:`PROGRESS_MIN_LENGTH` characters or more reports its progress on a second stream at each tenth of
  its length, as ``sample: 10,000 / 100,000 characters (9,812/s)``;
- with several temperatures each sample gets a header line (``----- temperature 0.5 -----``); with one, the text is
  written alone, ready to pipe.

A reader that closes the pipe (``| head``) makes a write raise ``BrokenPipeError``, which the ``lstm-interp``
command turns into a quiet exit with status 141.

Example::

    >>> import io
    >>> out = io.StringIO()
    >>> write_samples(model, 100, out, prompt="The ", temperatures=[0.5, 1.0], seed=0)  # doctest: +SKIP
    >>> out.getvalue().splitlines()[0]  # doctest: +SKIP
    '----- temperature 0.5 -----'
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterable, Sequence
from typing import TextIO

from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.vocab import CharVocab

# The prompt when none is given: a newline, where most texts start a line (else the vocabulary's first character).
DEFAULT_PROMPT = "\n"
# Samples at least this long report progress, at each tenth of the length.
PROGRESS_MIN_LENGTH = 10_000
PROGRESS_STEPS = 10
# The stream is flushed at every newline and at least every FLUSH_CHARS characters.
FLUSH_CHARS = 256


def default_prompt(vocab: CharVocab) -> str:
    """The prompt a sample starts from when none is given: :data:`DEFAULT_PROMPT` if ``vocab`` has it, else its
    first character.

    Example::

        >>> default_prompt(CharVocab("ab\\n")), default_prompt(CharVocab("ab"))
        ('\\n', 'a')
    """
    return DEFAULT_PROMPT if DEFAULT_PROMPT in vocab else vocab.chars[0]


def write_samples(
    model: CharLSTM,
    length: int,
    out: TextIO,
    *,
    prompt: str | None = None,
    temperatures: Sequence[float] = (1.0,),
    top_k: int | None = None,
    seed: int | None = None,
    progress: TextIO | None = None,
) -> None:
    """Write one sample of ``length`` characters per temperature to ``out``, each as it is drawn.

    Args:
        model: the network (with its vocabulary).
        length: characters sampled per temperature.
        out: the text stream written to (``sys.stdout``).
        prompt: the text each sample starts from, written before it; default :func:`default_prompt`, not written
            (a starting point, not part of what the user asked to read).
        temperatures: one sample each; with more than one, each sample follows a header line.
        top_k, seed: as for :meth:`~lstm_interp.CharLSTM.generate` (the same seed for every temperature).
        progress: where progress lines go for a sample of :data:`PROGRESS_MIN_LENGTH` characters or more (default:
            none).

    Raises:
        TypeError: ``temperatures`` that is not a sequence of numbers.
        ValueError: no temperature; and what ``generate_stream`` refuses (an empty prompt, a negative length or
            temperature, ``top_k`` < 1), before anything of that sample is written.
        VocabularyError: a prompt outside the vocabulary, before anything is written.
        BrokenPipeError: ``out`` is a pipe whose reader has gone.
    """
    if isinstance(temperatures, (str, bytes)) or not isinstance(temperatures, Sequence):
        raise TypeError(f"`temperatures` must be a sequence of numbers, got {type(temperatures).__name__}")
    if not temperatures:
        raise ValueError("`temperatures` is empty; give at least one temperature (1.0, say)")
    bad = [t for t in temperatures if isinstance(t, bool) or not isinstance(t, numbers.Real)]
    if bad:
        raise TypeError(f"`temperatures` must hold numbers, got {bad[0]!r}")
    start = default_prompt(model._require_vocab()) if prompt is None else prompt
    for i, temperature in enumerate(temperatures):
        # Called before the header is written: generate_stream checks the prompt at once, so a prompt outside the
        # vocabulary fails with nothing written.
        chars = model.generate_stream(start, length, temperature=temperature, top_k=top_k, seed=seed)
        if len(temperatures) > 1:
            if i:
                out.write("\n")
            out.write(f"----- temperature {temperature:g} -----\n")
        if prompt is not None:
            out.write(prompt)
        write_stream(chars, length, out, progress)
        out.write("\n")
        out.flush()


def write_stream(chars: Iterable[str], length: int, out: TextIO, progress: TextIO | None = None) -> None:
    """Write the ``length`` characters of ``chars`` to ``out`` as they come, with progress lines on ``progress``.

    ``out`` is flushed at every newline and every :data:`FLUSH_CHARS` characters; with ``length`` >=
    :data:`PROGRESS_MIN_LENGTH` and a ``progress`` stream, one line goes to it at each tenth of ``length`` (always
    at the same counts, so runs can be compared).

    Example::

        >>> import io
        >>> out = io.StringIO()
        >>> write_stream(iter("ab\\nc"), 4, out)
        >>> out.getvalue()
        'ab\\nc'
    """
    milestones = (
        {length * step // PROGRESS_STEPS for step in range(1, PROGRESS_STEPS + 1)}
        if length >= PROGRESS_MIN_LENGTH and progress is not None
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


__all__ = [
    "DEFAULT_PROMPT",
    "FLUSH_CHARS",
    "PROGRESS_MIN_LENGTH",
    "default_prompt",
    "write_samples",
    "write_stream",
]
