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

import copy
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_interp.analysis._index_files import Corpus
from lstm_interp.analysis.corpus_pass import corpus_pass
from lstm_interp.analysis.corpus_shards import DEFAULT_PRIME_CHARS, DEFAULT_SHARD_CHARS
from lstm_interp.analysis.find_cells import _resolve_layers
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import QUANTITY_ORDER, Trace, display_values

if TYPE_CHECKING:  # Lightning is imported by the pass itself, when it runs (it takes seconds to import)
    import lightning.pytorch as pl

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
    collector = RowCollector(quantity, layers, max_rows=max_rows, with_text=with_text, max_steps=max_steps)
    offset = 0
    for item in [trace] if isinstance(trace, Trace) else trace:
        start, segment = item if isinstance(item, tuple) else (offset, item)
        if not isinstance(segment, Trace):
            raise TypeError(f"trace segments must be Trace objects or (start, Trace) pairs, got {type(item).__name__}")
        collector.update(segment, start)
        offset = collector.end
    return collector.rows()


class RowCollector:
    """:func:`probe_rows` as an accumulator: :meth:`update` with each segment and its first step, :meth:`merge` of
    consecutive parts (a corpus pass over shards, :func:`~lstm_interp.analysis.corpus_pass`), :meth:`rows` at the
    end. Two parts merged keep exactly the positions one pass over both keeps: the multiples of the stride the whole
    length needs (each part's own stride is never larger)."""

    def __init__(
        self,
        quantity: str = "cell",
        layers: str | int | Sequence[str | int] | None = None,
        *,
        max_rows: int,
        with_text: bool = False,
        max_steps: int | None = None,
    ) -> None:
        self.quantity, self.layers, self.max_rows = quantity, layers, max_rows
        self.with_text, self.max_steps = with_text, max_steps
        self.start: int | None = None
        self.end = 0
        self.stride, self.kept = 1, 0
        self.names: list[str] = []
        self.widths: list[int] = []
        self.layer_names: list[str] | None = None
        self.texts: list[str] = []
        self.x = self.positions = self.types = np.empty(0)

    def update(self, segment: Trace, start: int) -> RowCollector:
        """Add the next segment (it must start where the last one ended); returns self.

        Raises:
            ValueError: as :func:`probe_rows`.
        """
        offset = self.end
        if self.start is not None and start != offset:
            raise ValueError(f"a segment starts at step {start}, expected {offset}: segments must be consecutive")
        if self.start is None:
            self.start = offset = self.end = start
            self.layer_names = segment.layer_names
            self.names = _names(segment, _resolve_layers(segment, self.layers), self.quantity)
            self.widths = [segment[name].shape[1] for name in self.names]
            # Allocated once at its largest; pages never written (a short trace) take no memory.
            self.x = np.empty((self.max_rows, sum(self.widths)), dtype=np.float32)
            self.positions = np.empty(self.max_rows, dtype=np.int64)
            self.types = np.empty(self.max_rows, dtype=np.int64)
        elif segment.layer_names != self.layer_names or any(name not in segment for name in self.names):
            raise ValueError(f"the segment at step {offset} lacks {self.names} or has other layers: "
                             f"{segment.layer_names}")  # fmt: skip
        if self.with_text and segment.text is None:
            raise ValueError(f"the trace (its segment at step {offset}) holds no text: it was traced from ids")
        steps = segment.num_steps
        if self.max_steps is not None and offset + steps > self.max_steps:
            raise ValueError(f"the trace has more steps ({offset + steps} so far) than the {self.max_steps} expected")
        self._thin(self._stride_for(offset + steps))
        rows = slice((-offset) % self.stride, steps, self.stride)
        count = len(range(steps)[rows])
        column, kept = 0, self.kept
        for name, width in zip(self.names, self.widths, strict=True):
            shown = display_values(segment[name][rows], self.quantity).numpy()
            self.x[kept : kept + count, column : column + width] = shown
            column += width
        self.positions[kept : kept + count] = offset + np.arange(steps)[rows]
        self.types[kept : kept + count] = segment.tokens[rows].numpy()
        self.kept, self.end = kept + count, offset + steps
        if self.with_text:
            self.texts.append(segment.text or "")
        return self

    def _stride_for(self, steps: int) -> int:
        grown = self.stride
        while -(-steps // grown) > self.max_rows:
            grown *= 2
        return grown

    def _thin(self, stride: int) -> None:
        """Keep only the kept rows at multiples of ``stride`` (a multiple of the current one)."""
        if stride == self.stride:
            return
        keep = np.flatnonzero(self.positions[: self.kept] % stride == 0)
        for array in (self.x, self.positions, self.types):
            array[: len(keep)] = array[keep]
        self.kept, self.stride = len(keep), stride

    def merge(self, other: RowCollector) -> RowCollector:
        """These rows followed by ``other``'s (the next part): a new collector, keeping what one pass would.

        Raises:
            ValueError: other settings, or parts that are not consecutive.
        """
        if (self.quantity, self.max_rows, self.with_text) != (other.quantity, other.max_rows, other.with_text):
            raise ValueError("cannot merge probe rows of other settings")
        if other.start is None:
            return copy.deepcopy(self)
        if self.start is None:
            return copy.deepcopy(other)
        if other.start != self.end:
            raise ValueError(f"the rows to merge start at step {other.start}, not where these end ({self.end})")
        merged = copy.deepcopy(self)
        stride = max(other.stride, merged._stride_for(other.end - merged.start))  # type: ignore[operator]
        merged._thin(stride)
        theirs = np.flatnonzero(other.positions[: other.kept] % stride == 0)
        count = len(theirs)
        if merged.kept + count > merged.max_rows:  # cannot happen: the stride fits the whole length
            raise AssertionError(f"{merged.kept} + {count} rows exceed max_rows {merged.max_rows}")
        for mine, their in ((merged.x, other.x), (merged.positions, other.positions), (merged.types, other.types)):
            mine[merged.kept : merged.kept + count] = their[theirs]
        merged.kept += count
        merged.end = other.end
        merged.texts = merged.texts + other.texts
        return merged

    def rows(self) -> ProbeRows:
        """What was kept, as :class:`ProbeRows` (positions count from the corpus's start).

        Raises:
            ValueError: nothing was added.
        """
        if self.start is None:
            raise ValueError("`trace` yielded no segment")
        owners = tuple((name.rsplit(".", 1)[0], unit) for name, width in zip(self.names, self.widths, strict=True)
                       for unit in range(width))  # fmt: skip
        layer_names = tuple(name.rsplit(".", 1)[0] for name in self.names)
        text = "".join(self.texts) if self.with_text else None
        k = self.kept
        return ProbeRows(self.x[:k], self.positions[:k], self.types[:k], owners, self.quantity, layer_names,
                         self.end, self.stride, text)  # fmt: skip


def _names(trace: Trace, layers: list[str], quantity: str) -> list[str]:
    """``<layer>.<quantity>`` for each layer, or an error listing the quantities the trace holds for them all."""
    held = [q for q in QUANTITY_ORDER if all(f"{layer}.{q}" in trace for layer in layers)]
    if quantity not in held:
        raise ValueError(f"quantity {quantity!r} is not in this trace for {layers}; it holds {held or 'none'}")
    return [f"{layer}.{quantity}" for layer in layers]


def corpus_probe_rows(
    model: CharLSTM,
    corpus: Corpus,
    quantity: str = "cell",
    layers: str | int | Sequence[str | int] | None = None,
    *,
    max_rows: int,
    with_text: bool = False,
    shard_chars: int = DEFAULT_SHARD_CHARS,
    prime_chars: int = DEFAULT_PRIME_CHARS,
    on_unknown: str = "error",
    trainer: pl.Trainer | None = None,
    **trainer_kwargs: Any,
) -> ProbeRows | None:
    """:func:`probe_rows` of ``model`` over a corpus, collected by a :func:`~lstm_interp.analysis.corpus_pass`
    (any accelerator, processes or nodes; the rows kept do not depend on them).

    Args:
        model: the network. corpus: a text, a file or a list of files.
        quantity, layers, max_rows, with_text: as for :func:`probe_rows`.
        shard_chars, prime_chars: the shards (:mod:`~lstm_interp.analysis.corpus_shards`).
        on_unknown: ``"error"`` or ``"skip"`` for characters outside the vocabulary.
        trainer: the Trainer to run on, or its arguments as keywords (``devices=2``, ...).

    Returns:
        The rows on rank 0; ``None`` on the other ranks.
    """
    collect = functools.partial(RowCollector, quantity, layers, max_rows=max_rows, with_text=with_text)
    collected = corpus_pass(model, corpus, collect, names_filter=f"layers.*.{quantity}", shard_chars=shard_chars,
                            prime_chars=prime_chars, on_unknown=on_unknown, trainer=trainer, **trainer_kwargs)
    return None if collected is None else collected.rows()
