"""``trace_segments``: trace a text of any length one segment at a time, carrying the state from each to the next.

Everything that reads a long text (the analysis pass, per-character log-probabilities, corpus statistics) goes
through this one generator, so that memory is one segment's activations whatever the text's length, and the
segments together are exactly the trace of the whole text (the state after segment ``k`` starts segment ``k + 1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from lstm_interp.models.char_lstm import CharLSTM, State
from lstm_interp.tracing.trace import DEFAULT_CHUNK_SIZE, NamesFilter, Trace, available_names, select_names, trace
from lstm_interp.vocab import OnUnknown

DEFAULT_SEGMENT_CHARS = 16_384


def trace_segments(
    model: CharLSTM,
    text: str | Tensor,
    segment_chars: int = DEFAULT_SEGMENT_CHARS,
    *,
    names_filter: NamesFilter = None,
    dtype: torch.dtype = torch.float32,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    state: State | None = None,
    on_unknown: OnUnknown = "error",
) -> Iterator[tuple[int, Trace]]:
    """Yield ``(start, trace)`` for consecutive segments of ``text``, each the exact continuation of the last.

    The whole text is encoded before the first segment is traced, so characters outside the vocabulary fail at
    once, not after hours. Each trace holds the segment's text and ids; ``start`` is the segment's first step in
    the whole text. ``Trace.concat`` of all of them equals ``trace(model, text)`` (up to float rounding of the
    chunk boundaries, well below 1e-5).

    Args:
        model: the network.
        text: a string, or a 1-D tensor of character ids.
        segment_chars: characters per segment (memory holds one segment's activations).
        names_filter, dtype, chunk_size, on_unknown: as for :func:`~lstm_interp.trace`.
        state: the state before the first character (zeros if ``None``).

    Raises:
        ValueError: a bad ``segment_chars``, an empty text, or a ``names_filter`` that matches nothing.
        VocabularyError: characters outside the vocabulary, with ``on_unknown="error"``.

    Example::

        >>> for start, tr in trace_segments(model, book, 8192, names_filter="layers.*.cell"):  # doctest: +SKIP
        ...     stats.update(tr)
    """
    if isinstance(segment_chars, bool) or not isinstance(segment_chars, int) or segment_chars < 1:
        raise ValueError(f"`segment_chars` must be a positive integer, got {segment_chars!r}")
    if isinstance(text, str):
        vocab = model._require_vocab()
        ids = vocab.encode(text, on_unknown=on_unknown)
    else:
        ids = torch.as_tensor(text, dtype=torch.long).reshape(-1).cpu()
    if len(ids) == 0:
        raise ValueError("cannot trace an empty text")
    # Checked here, not when the first segment is asked for, so that a bad filter fails where it was passed.
    select_names(names_filter, available_names(model.config.cell, model.config.num_layers))
    return _segments(model, ids, segment_chars, state, names_filter=names_filter, dtype=dtype, chunk_size=chunk_size)


def _segments(
    model: CharLSTM, ids: Tensor, segment_chars: int, state: State | None, **options: Any
) -> Iterator[tuple[int, Trace]]:
    for start in range(0, len(ids), segment_chars):
        segment = trace(model, ids[start : start + segment_chars], state=state, **options)
        state = segment.final_state
        yield start, segment
