"""``char_log_probs``: the log-probability a :class:`~lstm_interp.CharLSTM` gives each character of a text.

Entry ``t - 1`` of the result is ``log P(text[t] | text[:t])`` for ``t = 1 … T-1``: the model's output after reading
``text[t-1]`` (with the state carried from the start of the text), evaluated at the character that actually came
next. The first character has no prediction. The values are the trace's own ``log_probs`` (a float32
``log_softmax`` of the output layer, see :func:`~lstm_interp.trace`), so they are exactly what the model computes;
a long text is traced with :func:`~lstm_interp.tracing.trace_segments` and scored by
:class:`~lstm_interp.analysis.ActivationStats`, the one streaming pass.
"""

from __future__ import annotations

import numpy as np

from lstm_interp.analysis import ActivationStats
from lstm_interp.comparison._checks import check_text
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import DEFAULT_SEGMENT_CHARS, Trace, trace_segments
from lstm_interp.tracing.trace import DEFAULT_CHUNK_SIZE


def char_log_probs(
    source: CharLSTM | Trace,
    text: str | None = None,
    *,
    segment_chars: int = DEFAULT_SEGMENT_CHARS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """The model's log-probability of every character of ``text`` after the first, given all before it.

    Args:
        source: the model, or a :class:`~lstm_interp.Trace` that kept ``log_probs`` (its tokens are the text).
        text: the text, with a model; must be ``None`` or the trace's text with a trace.
        segment_chars: with a model, the text is traced this many characters at a time with the state carried
            across, so memory holds one segment's ``(segment_chars, V)`` log-probabilities, never the whole text's.
        chunk_size: passed to :func:`~lstm_interp.trace`.

    Returns:
        (T-1,) float32 array; entry ``t - 1`` is ``log P(text[t] | text[:t])`` in nats.

    Raises:
        ValueError: a text of fewer than 2 characters, a trace without ``log_probs``, a ``text`` that is not the
            trace's, a bad ``segment_chars``.
        VocabularyError: the text has characters the model's vocabulary lacks.

    Example::

        >>> lp = char_log_probs(model, "hello world")  # doctest: +SKIP
        >>> lp.shape, float(-lp.mean())  # 10 predictions; mean loss in nats  # doctest: +SKIP
        ((10,), 1.93)
    """
    if isinstance(source, Trace):
        return _from_trace(source, text)
    if not isinstance(source, CharLSTM):
        raise TypeError(f"`source` must be a CharLSTM or a Trace, got {type(source).__name__}")
    if text is None:
        raise ValueError("`text` is required with a model")
    check_text(text)
    stats = ActivationStats(source.config.cell, [f"layers.{i}" for i in range(source.config.num_layers)])
    for _, segment in trace_segments(source, text, segment_chars, names_filter="log_probs", chunk_size=chunk_size):
        stats.update(segment)
    return stats.log_probs()


def _from_trace(tr: Trace, text: str | None) -> np.ndarray:
    if "log_probs" not in tr:
        raise ValueError(f"the trace holds no 'log_probs'; it holds {list(tr)}. Trace without a `names_filter`")
    if text is not None and text != tr.text:
        raise ValueError(
            f"`text` ({len(text)} characters) is not the trace's text ({len(tr.text or '')} characters); "
            "leave it out with a trace"
        )
    if tr.num_steps < 2:
        raise ValueError(
            f"the trace has {tr.num_steps} character(s); at least 2 are needed (the first has no prediction)"
        )
    return ActivationStats.of(tr.select("log_probs")).log_probs()
