"""``char_log_probs``: the log-probability a :class:`~lstm_interp.CharLSTM` gives each character of a text.

Entry ``t - 1`` of the result is ``log P(text[t] | text[:t])`` for ``t = 1 … T-1``: the model's output after reading
``text[t-1]`` (with the state carried from the start of the text), evaluated at the character that actually came
next. The first character has no prediction. The values are the trace's own ``log_probs`` (a float32
``log_softmax`` of the output layer, see :func:`~lstm_interp.trace`), so they are exactly what the model computes.
"""

from __future__ import annotations

import numpy as np
import torch

from lstm_interp.comparison._checks import check_text
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import Trace, trace
from lstm_interp.tracing.trace import DEFAULT_CHUNK_SIZE

DEFAULT_SEGMENT_CHARS = 16_384


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
    if isinstance(segment_chars, bool) or not isinstance(segment_chars, int) or segment_chars < 1:
        raise ValueError(f"`segment_chars` must be a positive integer, got {segment_chars!r}")
    if text is None:
        raise ValueError("`text` is required with a model")
    check_text(text)
    ids = source._require_vocab().encode(text)  # (T,)
    out = np.empty(len(ids) - 1, dtype=np.float32)
    state = None
    for start in range(0, len(ids) - 1, segment_chars):
        segment = ids[start : start + segment_chars]
        tr = trace(source, segment, names_filter="log_probs", state=state, chunk_size=chunk_size)
        state = tr.final_state
        targets = ids[start + 1 : start + 1 + len(segment)]  # the last segment has one prediction too many
        rows = tr["log_probs"][: len(targets)]
        out[start : start + len(targets)] = rows.gather(1, targets[:, None]).squeeze(1).numpy()
    return out


def _from_trace(tr: Trace, text: str | None) -> np.ndarray:
    if "log_probs" not in tr:
        raise ValueError(f"the trace holds no 'log_probs'; it holds {list(tr)}. Trace without a `names_filter`")
    if text is not None and text != tr.text:
        raise ValueError(
            f"`text` ({len(text)} characters) is not the trace's text ({len(tr.text or '')} characters); "
            "leave it out with a trace"
        )
    tokens = torch.as_tensor(tr.tokens, dtype=torch.long)
    if len(tokens) < 2:
        raise ValueError(
            f"the trace has {len(tokens)} character(s); at least 2 are needed (the first has no prediction)"
        )
    log_probs = tr["log_probs"].float()
    return log_probs[:-1].gather(1, tokens[1:, None]).squeeze(1).numpy()
