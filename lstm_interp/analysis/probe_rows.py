"""``probe_rows``: the displayed values of a trace's units at evenly spaced positions, in bounded memory.

A probe is fitted on one row per position: the values every picture shows (:func:`~lstm_interp.tracing.display_values`:
``tanh(c)`` for the cell state, ``2g - 1`` for a gate, hidden states as they are) of every unit of the chosen layers.
A long text is traced segment by segment (:func:`~lstm_interp.trace_segments`), and its rows must fit in memory:
at most ``max_rows`` positions are kept, the multiples of a power-of-two **stride**, the smallest that keeps
``ceil(T / stride) <= max_rows`` for a text of ``T`` steps. While the segments arrive the stride doubles as needed,
each time dropping every other kept row, so a whole trace and its segments keep exactly the same positions (between
``max_rows / 2`` and ``max_rows`` of them). Memory is the kept rows plus one segment.

Besides the values, each kept position's character (token) id is kept (for a control task, which labels character
types), and the text, joined from the segments, when a feature is to be computed on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from lstm_interp.analysis.find_cells import _resolve_layers
from lstm_interp.tracing import QUANTITY_ORDER, Trace, display_values

TraceLike = Trace | Iterable[Trace | tuple[int, Trace]]


@dataclass(frozen=True)
class ProbeRows:
    """What :func:`probe_rows` kept.

    Args:
        x: (N, U) float32, the displayed values at the kept positions: one layer's units after another's.
        positions: (N,) the kept positions (steps of the whole text), ``0, stride, 2 * stride, ...``.
        types: (N,) the character (token) id at each kept position.
        owners: ``(layer, unit)`` of each column of ``x``.
        quantity: the quantity read. layers: the layers read, in column order.
        num_steps: steps in the whole trace.
        stride: every ``stride``-th position was kept.
        text: the whole text, when asked for (``with_text=True``); else ``None``.
    """

    x: np.ndarray
    positions: np.ndarray
    types: np.ndarray
    owners: tuple[tuple[str, int], ...]
    quantity: str
    layers: tuple[str, ...]
    num_steps: int
    stride: int
    text: str | None


def probe_rows(
    trace: TraceLike,
    quantity: str = "cell",
    layers: str | int | Sequence[str | int] | None = None,
    *,
    max_rows: int,
    with_text: bool = False,
    max_steps: int | None = None,
) -> ProbeRows:
    """Read ``quantity`` of ``layers`` at evenly spaced positions of a trace, or of its segments in order.

    Args:
        trace: a trace, or consecutive segments (``Trace`` items or ``(start, Trace)`` pairs, as
            :func:`~lstm_interp.trace_segments` yields them); a generator is read once, segment by segment.
        quantity: the per-layer quantity. layers: by name or index (default: all).
        max_rows: the most positions kept (see the module docstring).
        with_text: keep the whole text (an error if a segment has none).
        max_steps: the most steps the caller can use (the length of a precomputed feature): a trace longer than
            that fails as soon as a segment goes beyond it.

    Raises:
        ValueError: a layer or quantity the trace lacks (listing those it has), segments of other layers or not
            consecutive, a segment without text when ``with_text``, more steps than ``max_steps``, no segment.
        TypeError: ``trace`` is neither a trace nor an iterable of them.

    Example::

        >>> rows = probe_rows(trace_segments(model, book, names_filter="layers.*.cell"), max_rows=50_000)
        ... # doctest: +SKIP
        >>> rows.x.shape, rows.stride  # doctest: +SKIP
        ((40960, 1024), 32)
    """
    if not isinstance(trace, Trace | Iterable) or isinstance(trace, str | bytes):
        raise TypeError(f"`trace` must be a Trace or an iterable of trace segments, got {type(trace).__name__}")
    stride, kept, offset = 1, 0, 0
    first: Trace | None = None
    names: list[str] = []
    widths: list[int] = []
    texts: list[str] = []
    x = positions = types = np.empty(0)
    for item in [trace] if isinstance(trace, Trace) else trace:
        start, segment = item if isinstance(item, tuple) else (offset, item)
        if not isinstance(segment, Trace):
            raise TypeError(f"trace segments must be Trace objects or (start, Trace) pairs, got {type(item).__name__}")
        if start != offset:
            raise ValueError(f"a segment starts at step {start}, expected {offset}: segments must be consecutive")
        if first is None:
            first = segment
            names = _names(segment, _resolve_layers(segment, layers), quantity)
            widths = [segment[name].shape[1] for name in names]
            # Allocated once at its largest; pages never written (a short trace) take no memory.
            x = np.empty((max_rows, sum(widths)), dtype=np.float32)
            positions, types = np.empty(max_rows, dtype=np.int64), np.empty(max_rows, dtype=np.int64)
        elif segment.layer_names != first.layer_names or any(name not in segment for name in names):
            raise ValueError(f"the segment at step {offset} lacks {names} or has other layers: {segment.layer_names}")
        if with_text and segment.text is None:
            raise ValueError(f"the trace (its segment at step {offset}) holds no text: it was traced from ids")
        steps = segment.num_steps
        if max_steps is not None and offset + steps > max_steps:
            raise ValueError(f"the trace has more steps ({offset + steps} so far) than the {max_steps} expected")
        grown = stride
        while -(-(offset + steps) // grown) > max_rows:
            grown *= 2
        if grown != stride:  # keep every (grown // stride)-th kept row: the multiples of the new stride
            step, stride = grown // stride, grown
            count = -(-kept // step)
            for array in (x, positions, types):
                array[:count] = array[:kept:step]  # numpy copies overlapping slices safely
            kept = count
        rows = slice((-offset) % stride, steps, stride)
        count = len(range(steps)[rows])
        column = 0
        for name, width in zip(names, widths, strict=True):
            x[kept : kept + count, column : column + width] = display_values(segment[name][rows], quantity).numpy()
            column += width
        positions[kept : kept + count] = offset + np.arange(steps)[rows]
        types[kept : kept + count] = segment.tokens[rows].numpy()
        kept, offset = kept + count, offset + steps
        if with_text:
            texts.append(segment.text)
    if first is None:
        raise ValueError("`trace` yielded no segment")
    owners = tuple((name.rsplit(".", 1)[0], unit) for name, width in zip(names, widths, strict=True)
                   for unit in range(width))  # fmt: skip
    layer_names = tuple(name.rsplit(".", 1)[0] for name in names)
    text = "".join(texts) if with_text else None
    return ProbeRows(x[:kept], positions[:kept], types[:kept], owners, quantity, layer_names, offset, stride, text)


def _names(trace: Trace, layers: list[str], quantity: str) -> list[str]:
    """``<layer>.<quantity>`` for each layer, or an error listing the quantities the trace holds for them all."""
    held = [q for q in QUANTITY_ORDER if all(f"{layer}.{q}" in trace for layer in layers)]
    if quantity not in held:
        raise ValueError(f"quantity {quantity!r} is not in this trace for {layers}; it holds {held or 'none'}")
    return [f"{layer}.{quantity}" for layer in layers]
