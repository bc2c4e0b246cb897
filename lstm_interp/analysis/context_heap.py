"""``ContextHeap``: per unit, the k highest (or lowest) peaks of a stream of activations, each with its passage.

Neuroscope shows, for every neuron, the corpus passages where it is most active. Over a corpus of any length that
must be a bounded, streaming accumulator: it is shown one (T, H) segment of a layer's values after another, keeps
per unit at most ``k`` peaks with their exact values and the ``2 * window + 1`` steps around each (the character ids
and the unit's raw values there), and never holds more than that plus ``2 * window`` steps of the stream.

**No near-duplicates: one peak per passage.** A unit that stays high for 200 characters would otherwise fill its
top 20 with the same passage shifted by one character. So only *local peaks* are kept: step ``p`` is a candidate
when its value is strictly above every value in the ``window`` steps before it and at least every value in the
``window`` steps after it (on a plateau, its first step). Two candidates are therefore more than ``window`` steps
apart, so no kept peak lies inside another's ±``window`` passage. The heap keeps the ``k`` largest candidates,
ties broken by the earlier position; a short text or a flat unit may have fewer than ``k`` (``found``). Steps
outside the text count as absent (a peak may sit at the first or last character). NaN is never a peak.

**Exact and segmentation-free.** Whether ``p`` is a peak depends on ``[p - window, p + window]`` only, so a peak
is decided once those steps have been seen: the last ``window`` steps of each segment wait for the next segment
(a tail of ``2 * window`` steps is kept), and an accumulator that does not start at step 0 (a shard) keeps its first
``2 * window`` steps for the shard before it. :meth:`merge` decides the peaks around the junction from those, so the
merge of consecutive shards equals one pass over the whole, bit for bit, however the text was cut. :meth:`finished`
decides the steps at both ends as the text's ends. Selection is vectorised: a sliding maximum by doubling, one
int64 key per step (the float's order-preserving bits, then the position), at most one candidate per block of
``window + 1`` steps, and ``torch.topk``; there is no Python loop over steps or units.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

__all__ = ["ContextHeap"]

EMPTY = torch.iinfo(torch.int64).min  # the key of an empty slot: below every real key
_POSITIONS = 1 << 32  # positions are the low 32 bits of a key
_NEG_INF = torch.tensor(float("-inf"))


class ContextHeap:
    """The ``k`` highest (``largest=True``) or lowest local peaks of each unit, with their passages.

    Args:
        units: ``H``, the columns of the values it is shown.
        k: peaks kept per unit.
        window: the passage around a peak, in steps on each side; also the distance within which a peak must
            dominate (see the module docstring).
        largest: keep the highest peaks (``False``: the lowest, troughs).

    Raises:
        ValueError: ``units``, ``k`` or ``window`` below 1.

    Example::

        >>> heap = ContextHeap(units=512, k=20, window=40)  # doctest: +SKIP
        >>> for start, segment in trace_segments(model, book, 16384):  # doctest: +SKIP
        ...     heap.update(segment["layers.1.cell"], segment.tokens, start)
        >>> done = heap.finished()  # doctest: +SKIP
        >>> done.positions()[171], done.values()[171]  # doctest: +SKIP
    """

    def __init__(self, units: int, k: int = 20, window: int = 40, *, largest: bool = True) -> None:
        for name, value in (("units", units), ("k", k), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        self.units, self.k, self.window, self.largest = units, k, window, bool(largest)
        self.start: int | None = None  # the first step seen; None before any
        self.end = 0  # one past the last step seen
        self.is_finished = False
        span = 2 * window + 1
        self._keys = torch.full((units, k), EMPTY, dtype=torch.int64)  # (H, k), best first
        self._ids = torch.full((units, k, span), -1, dtype=torch.int32)  # (H, k, 2W+1) the passages' ids
        self._vals = torch.full((units, k, span), float("nan"))  # (H, k, 2W+1) the unit's raw values there
        self._head_vals, self._head_ids = torch.zeros(0, units), torch.zeros(0, dtype=torch.int64)  # first 2W steps
        self._tail_vals, self._tail_ids = torch.zeros(0, units), torch.zeros(0, dtype=torch.int64)  # last 2W steps

    # ------------------------------------------------------------------ feeding
    def update(self, values: Tensor, ids: Tensor, start: int) -> ContextHeap:
        """Add the next segment: ``values`` (T, H) of the unit's raw quantity, ``ids`` (T,) its characters, ``start``
        its first step in the whole text (the end of the last segment). Returns ``self``.

        Raises:
            ValueError: a segment that does not continue the last one, of the wrong width, or past step 2**32.
        """
        if self.is_finished:
            raise ValueError("this heap is finished (its ends were decided as the text's ends); update the original")
        values = values.detach().to("cpu", torch.float32)
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if values.dim() != 2 or values.shape[1] != self.units or len(ids) != len(values):
            raise ValueError(
                f"expected (T, {self.units}) values and (T,) ids, got {tuple(values.shape)} and {tuple(ids.shape)}"
            )
        if self.start is None:
            if isinstance(start, bool) or not isinstance(start, int) or start < 0:
                raise ValueError(f"`start` must be a step >= 0, got {start!r}")
            self.start = self.end = start
        elif start != self.end:
            raise ValueError(f"a segment starting at step {start} does not continue the heap, ending at {self.end}")
        if not len(values):
            return self
        if self.end + len(values) > _POSITIONS:
            raise ValueError(f"steps past {_POSITIONS:,} cannot be kept (a position is 32 bits of the sort key)")
        buffer_vals = torch.cat([self._tail_vals, values])
        buffer_ids = torch.cat([self._tail_ids, ids])
        first = self.end - len(self._tail_vals)
        end = self.end + len(values)
        low = max(self.end - self.window, self._first_decidable())
        self._decide(buffer_vals, buffer_ids, first, low, end - self.window)
        self._keep_edges(values, ids)
        self.end = end
        return self

    def merge(self, other: ContextHeap) -> ContextHeap:
        """This heap followed by ``other`` (the next part of the text, starting where this one ends): a new heap,
        equal to one pass over both parts.

        Raises:
            ValueError: heaps of other sizes or direction, finished ones, or parts that are not consecutive.
        """
        if (other.units, other.k, other.window, other.largest) != (self.units, self.k, self.window, self.largest):
            raise ValueError(
                f"cannot merge a heap of {other.units} units, k={other.k}, window={other.window}, "
                f"largest={other.largest} into one of {self.units}, k={self.k}, window={self.window}, "
                f"largest={self.largest}"
            )
        if self.is_finished or other.is_finished:
            raise ValueError("finished heaps cannot be merged: merge the heaps, then call finished()")
        if other.start is None:
            return copy.deepcopy(self)
        if self.start is None:
            return copy.deepcopy(other)
        if other.start != self.end:
            raise ValueError(f"the heap to merge starts at step {other.start}, not where this one ends ({self.end})")
        merged = copy.deepcopy(self)
        merged._add(other._keys, other._ids, other._vals)
        buffer_vals = torch.cat([self._tail_vals, other._head_vals])
        buffer_ids = torch.cat([self._tail_ids, other._head_ids])
        # The steps neither part could decide: the last `window` of this part, the first `window` of the other.
        low = max(self.end - self.window, self._first_decidable())
        merged._decide(buffer_vals, buffer_ids, self.end - len(self._tail_vals), low,
                       min(self.end + self.window, other.end - self.window))  # fmt: skip
        room = 2 * self.window - len(self._head_vals)
        merged._head_vals = torch.cat([self._head_vals, other._head_vals[:room]])
        merged._head_ids = torch.cat([self._head_ids, other._head_ids[:room]])
        merged._tail_vals = torch.cat([self._tail_vals, other._tail_vals])[-2 * self.window :]
        merged._tail_ids = torch.cat([self._tail_ids, other._tail_ids])[-2 * self.window :]
        merged.end = other.end
        return merged

    def finished(self) -> ContextHeap:
        """A copy whose last (and, for a shard, first) ``window`` steps are decided too, as the text's ends."""
        done = copy.deepcopy(self)
        done.is_finished = True
        if self.start is None:
            return done
        start, end, w = self.start, self.end, self.window
        if start > 0:  # a shard: its first steps are now the text's first
            done._decide(self._head_vals, self._head_ids, start, start, min(start + w, end))
        low = max(end - w, start + w if start > 0 else start)
        done._decide(self._tail_vals, self._tail_ids, end - len(self._tail_vals), low, end)
        return done

    # ------------------------------------------------------------------ results
    def found(self) -> Tensor:
        """(H,) int64: peaks kept per unit (``k``, or fewer for a short text or a flat unit)."""
        return (self._keys != EMPTY).sum(dim=1)

    def positions(self) -> Tensor:
        """(H, k) int64: the steps of each unit's peaks, best first; -1 in empty slots."""
        positions = (_POSITIONS - 1) - (self._keys & (_POSITIONS - 1))
        return torch.where(self._keys == EMPTY, -1, positions)

    def values(self) -> Tensor:
        """(H, k) float32: the unit's raw value at each peak (exactly the trace's); NaN in empty slots."""
        return self._vals[:, :, self.window]

    def windows(self) -> tuple[Tensor, Tensor]:
        """``(ids, values)``, each (H, k, 2 * window + 1): the character ids (-1 outside the text or in an empty
        slot) and the unit's raw values (NaN there) of the steps ``position - window .. position + window``."""
        return self._ids, self._vals

    def __repr__(self) -> str:
        kind = "largest" if self.largest else "smallest"
        return (
            f"ContextHeap({self.units} units, k={self.k} {kind}, window={self.window}, "
            f"steps {self.start}..{self.end}{', finished' if self.is_finished else ''})"
        )

    # ------------------------------------------------------------------ the work
    def _first_decidable(self) -> int:
        """The first step whose ``window`` steps before it are known: the start, unless a shard (its predecessor
        holds them)."""
        assert self.start is not None
        return self.start if self.start == 0 else self.start + self.window

    def _keep_edges(self, values: Tensor, ids: Tensor) -> None:
        room = 2 * self.window - len(self._head_vals)
        if room > 0:
            self._head_vals = torch.cat([self._head_vals, values[:room]])
            self._head_ids = torch.cat([self._head_ids, ids[:room]])
        self._tail_vals = torch.cat([self._tail_vals, values])[-2 * self.window :].clone()
        self._tail_ids = torch.cat([self._tail_ids, ids])[-2 * self.window :].clone()

    def _decide(self, buffer_vals: Tensor, buffer_ids: Tensor, first: int, low: int, high: int) -> None:
        """Find the peaks among steps ``low .. high - 1`` and add them. ``buffer_*`` hold steps ``first ..``; every
        step within ``window`` of ``low .. high - 1`` must be in it, or outside the text (then it counts as absent)."""
        if high <= low:
            return
        w, n, block = self.window, high - low, self.window + 1
        # Steps low - w .. high + w (+ padding to whole blocks), the bottom heap's negated, -inf where the buffer
        # has no step (outside the text) and at NaN.
        padded = torch.full((n + 2 * w + 1 + (-n % block), self.units), float("-inf"))
        lo, hi = max(low - w - first, 0), min(high + w + 1 - first, len(buffer_vals))
        at = lo - (low - w - first)
        if hi > lo:
            rows = padded[at : at + hi - lo]
            if self.largest:
                rows.copy_(buffer_vals[lo:hi])
            else:
                torch.neg(buffer_vals[lo:hi], out=rows)
            if torch.isnan(rows).any():
                rows.nan_to_num_(nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
        highest = _window_max(padded[: n + 2 * w + 1], w)  # highest[i] = max(padded[i : i + w])
        centre = padded[w : w + n]  # (n, H) the steps decided
        peak = (centre > highest[:n]).logical_and_(centre >= highest[w + 1 : w + 1 + n])
        # Peaks are more than `window` steps apart: a block of window + 1 steps holds at most one per unit, so the
        # blocks' maxima are every peak (a block without one, or whose peak is -inf, gives -inf: dropped below).
        masked = torch.full((n + (-n % block), self.units), float("-inf"))
        torch.where(peak, centre, _NEG_INF, out=masked[:n])
        best, offset = masked.reshape(-1, block, self.units).max(dim=1)  # (blocks, H)
        positions = low + torch.arange(0, len(best))[:, None] * block + offset
        keys = torch.where(best > float("-inf"), _order_bits(best) * _POSITIONS + (_POSITIONS - 1 - positions), EMPTY)
        keys = keys.topk(min(self.k, len(keys)), dim=0).values.T.contiguous()  # (H, k')
        ids, vals = self._passages(keys, buffer_vals, buffer_ids, first)
        self._add(keys, ids, vals)

    def _passages(self, keys: Tensor, buffer_vals: Tensor, buffer_ids: Tensor, first: int) -> tuple[Tensor, Tensor]:
        """(H, k', 2W+1) ids and raw values around the peaks ``keys`` (H, k'), read from the buffer."""
        positions = (_POSITIONS - 1) - (keys & (_POSITIONS - 1))
        rows = positions[:, :, None] - first + torch.arange(-self.window, self.window + 1)  # (H, k', 2W+1)
        inside = (rows >= 0) & (rows < len(buffer_vals)) & (keys != EMPTY)[:, :, None]
        rows = rows.clamp(0, max(len(buffer_vals) - 1, 0))
        units = torch.arange(self.units)[:, None, None].expand_as(rows)
        if len(buffer_vals):
            vals = torch.where(inside, buffer_vals[rows, units], float("nan"))
            ids = torch.where(inside, buffer_ids[rows], -1).to(torch.int32)
        else:
            vals, ids = torch.full(rows.shape, float("nan")), torch.full(rows.shape, -1, dtype=torch.int32)
        return ids, vals

    def _add(self, keys: Tensor, ids: Tensor, vals: Tensor) -> None:
        """Merge candidates (H, k') and their passages into the kept ones: the k largest keys, best first."""
        all_keys = torch.cat([self._keys, keys], dim=1)
        best, order = all_keys.topk(self.k, dim=1)  # keys are unique (positions differ), so the order is exact
        gather = order[:, :, None].expand(-1, -1, self._ids.shape[2])
        self._ids = torch.cat([self._ids, ids], dim=1).gather(1, gather)
        self._vals = torch.cat([self._vals, vals], dim=1).gather(1, gather)
        self._keys = best


def _order_bits(x: Tensor) -> Tensor:
    """float32 -> int64 with the same order (the IEEE-754 bits, negatives flipped): a sort key for exact ties."""
    bits = x.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _window_max(x: Tensor, width: int) -> Tensor:
    """(len(x) - width + 1, H): ``out[i] = max(x[i : i + width])``, by doubling (log2(width) elementwise maxima)."""
    span, out = 1, x
    while 2 * span <= width:
        out = torch.maximum(out[:-span], out[span:])
        span *= 2
    if span < width:  # two overlapping windows of `span` cover `width`
        out = torch.maximum(out[: len(out) - (width - span)], out[width - span :])
    return out
