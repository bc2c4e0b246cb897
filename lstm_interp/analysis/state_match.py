"""LSTMVis's match over a :class:`~lstm_interp.analysis.state_index.StateIndex`'s bits: :class:`Match` and
:func:`rank_matches`.

:func:`rank_matches` (behind :meth:`StateIndex.match`) follows LSTMVis's ``query_similar_activations``
(HendrikStrobelt/LSTMVis, ``lstmdata/data_handler.py``): the candidates are, for every ``k`` from the selection's
size down to 1, the maximal runs of at least ``min_length`` (LSTMVis's ``cut_off = 2``) steps where at least ``k``
selected cells are on (``hf.rle`` of the count clipped at ``k``); for each, the cells fully on over the span (and,
with LSTMVis's zero constraints ``off_before``/``off_after``, off at the step before/after it) are intersected and
united with the selection; matches are ranked by the largest intersection, then the smallest union, then the longest
span (then the earliest, where LSTMVis's order is a dict's). Where LSTMVis cuts corners, this does not: it reads
every step (LSTMVis's "fast" mode only the first 500,000) and keeps every candidate that could rank in the top
(LSTMVis at most 1,000 or 10,000, chosen before ranking); levels stop only once ``top`` candidates have an
intersection that no lower level can reach. Spans at the text's edges are kept (LSTMVis drops those touching the
first or last step), a constraint past an edge imposes nothing, and candidates with an empty intersection are not
matches. The union counts the cells of the selection's layers, as LSTMVis's counts those of its one source (layer).
No constraint is the default here (the spans where the cells are on together); LSTMVis's client sends its brush's,
left on by default (``lstm_server.yaml``: ``constraints`` 1,0), which ``off_before=True`` reproduces. Memory per
step: 8 bytes for every 64 selected cells (their bits as ``uint64`` words; twice that while they are packed) and 4
for their count, plus the candidate spans' bytes in blocks of at most 32 MB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_GATHER_BYTES = 1 << 25  # units x bytes gathered per block when checking which cells are on over the spans
_BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class Match:
    """A span of the corpus where (some of) the selected cells are on together, as :func:`rank_matches` ranks it.

    Args:
        start, end: the span's steps, end exclusive.
        intersection: selected cells on over the whole span.
        union: cells of the selection's layers that are selected or on over the whole span.
        cells: ``(layer, unit)`` of every cell of those layers on over the whole span, selected or not.
    """

    start: int
    end: int
    intersection: int
    union: int
    cells: tuple[tuple[str, int], ...]

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def jaccard(self) -> float:
        """``intersection / union``: 1 when exactly the selected cells are on over the span."""
        return self.intersection / self.union

    @property
    def scores(self) -> dict[str, float]:
        return {"intersection": self.intersection, "union": self.union, "jaccard": self.jaccard, "length": self.length}


def rank_matches(
    bits: Mapping[str, np.ndarray],
    num_steps: int,
    selection: list[tuple[str, int]],
    top: int,
    min_length: int = 2,
    off_before: bool = False,
    off_after: bool = False,
) -> list[Match]:
    """The spans where the selected cells are on together, best first (the module docstring's rules).

    Args:
        bits: indexed name (``layers.1.cell``) -> its (H, ceil(T / 8)) packed bits, as a state index stores them.
        num_steps: T, the steps indexed.
        selection: ``(indexed name, unit)`` pairs, checked and each once (:meth:`StateIndex.match` checks them).
        top, min_length, off_before, off_after: as :meth:`StateIndex.match` documents them.
    """
    n, T = len(selection), num_steps
    words = _step_words(bits, T, selection)  # (W, T + 1): bit i of word i // 64 = selected cell i on; a zero pad step
    count = sum(_popcount(w).astype(np.int32) for w in words)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    highest = int(count.max())  # LSTMVis starts at n; the levels above the most cells on at once are empty
    for k in range(highest, 0, -1):  # LSTMVis's test_cell_number: runs where at least k selected cells are on
        edges = np.flatnonzero(np.diff(count[:T] >= k, prepend=False, append=False))
        starts, ends = edges[0::2], edges[1::2]
        keep = ends - starts >= min_length
        bounds = np.stack([starts[keep], ends[keep]], axis=1).ravel()
        if k < highest and len(bounds):  # a run whose fewest on is above k was found at a higher level
            keep = np.minimum.reduceat(count, bounds)[0::2] == k
            bounds = bounds.reshape(-1, 2)[keep].ravel()
        if len(bounds):
            on = np.bitwise_and.reduceat(words, bounds, axis=1)[:, 0::2]  # (W, m): selected cells on throughout
            starts, ends = bounds[0::2], bounds[1::2]
            if off_before:  # starts - 1 == -1 reads the zero pad step: nothing is required before the text
                on &= ~words[:, starts - 1]
            if off_after:
                on &= ~words[:, ends]
            found.append((starts, ends, sum(_popcount(w).astype(np.int32) for w in on)))
        if sum(int((inter >= k).sum()) for *_, inter in found) >= top:
            break  # every span of a lower level has an intersection below k: none can rank in the top
    if not found:
        return []
    starts, ends, inter = (np.concatenate(parts) for parts in zip(*found, strict=True))
    cut = max(1, np.sort(inter)[::-1][min(top, len(inter)) - 1])
    chosen = inter >= cut  # only these can rank in the top; the union is needed for them alone
    starts, ends, inter = starts[chosen], ends[chosen], inter[chosen]
    union = n + sum(
        _on_over(bits[name], T, starts, ends, off_before, off_after, exclude=units).sum(axis=1)
        for name, units in _by_name(selection).items()
    )
    best = np.lexsort((starts, -(ends - starts), union, -inter))[:top]
    starts, ends, inter, union = starts[best], ends[best], inter[best], union[best]
    layer_of = {name: name.rsplit(".", 1)[0] for name in bits}
    full = {name: _on_over(bits[name], T, starts, ends, off_before, off_after) for name in _by_name(selection)}
    return [
        Match(
            int(s), int(e), int(i), int(u),
            tuple((layer_of[name], int(unit)) for name, on in full.items() for unit in np.flatnonzero(on[j])),
        )
        for j, (s, e, i, u) in enumerate(zip(starts, ends, inter, union, strict=True))
    ]  # fmt: skip


def _step_words(bits: Mapping[str, np.ndarray], T: int, selection: list[tuple[str, int]]) -> np.ndarray:
    """(W, T + 1) uint64: bit ``i % 64`` of word ``i // 64`` at step t is whether selected cell ``i`` is on."""
    groups = -(-len(selection) // 8)
    stacked = np.zeros((-(-groups // 8) * 8, T + 1), dtype=np.uint8)
    for i, (name, unit) in enumerate(selection):  # eight cells' bits make one byte per step, cell 8g at bit 0
        stacked[i // 8, :T] |= np.unpackbits(bits[name][unit], count=T) << np.uint8(i % 8)
    return np.ascontiguousarray(stacked.reshape(-1, 8, T + 1).transpose(0, 2, 1)).view("<u8")[..., 0]


def _on_over(
    packed: np.ndarray,
    T: int,
    starts: np.ndarray,
    ends: np.ndarray,
    off_before: bool,
    off_after: bool,
    exclude: Sequence[int] = (),
) -> np.ndarray:
    """(m, H) bool: which units of ``packed`` (H, ceil(T / 8)) are on at every step of each span (and off around it,
    if asked)."""
    units = packed.shape[0]
    # Spans are cut into pieces of at most `limit` bytes, checked in blocks of at most `limit` bytes (for every
    # unit: _GATHER_BYTES), and the pieces of each span ANDed: memory stays bounded whatever the spans' lengths.
    limit = max(1, _GATHER_BYTES // units)
    pieces = -(-(((ends - 1) >> 3) - (starts >> 3) + 1) // limit)
    owner = np.repeat(np.arange(len(starts)), pieces)
    piece = np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    lo = np.maximum(starts[owner], ((starts[owner] >> 3) + piece * limit) * 8)
    hi = np.minimum(ends[owner], ((starts[owner] >> 3) + (piece + 1) * limit) * 8)
    first = lo >> 3
    widths = ((hi - 1) >> 3) - first + 1
    whole = np.empty((len(owner), units), dtype=bool)
    ends_at, j = np.cumsum(widths), 0
    while j < len(owner):
        k = max(j + 1, int(np.searchsorted(ends_at, ends_at[j] - widths[j] + limit, side="right")))
        whole[j:k] = _all_ones(packed, lo[j:k], hi[j:k], first[j:k], widths[j:k])
        j = k
    cut = len(owner) > len(starts)
    result = np.logical_and.reduceat(whole, np.cumsum(pieces) - pieces, axis=0) if cut else whole
    if off_before:
        result &= ~(_bit_at(packed, starts - 1) & (starts > 0)[:, None])
    if off_after:
        result &= ~(_bit_at(packed, np.minimum(ends, T - 1)) & (ends < T)[:, None])
    result[:, list(exclude)] = False
    return result



def _all_ones(
    packed: np.ndarray, starts: np.ndarray, ends: np.ndarray, first: np.ndarray, widths: np.ndarray
) -> np.ndarray:
    """(m, H) bool: whether each unit's bits are all 1 over each span, checked a byte at a time."""
    units = packed.shape[0]
    if not len(starts):
        return np.zeros((0, units), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
    columns = np.repeat(first - offsets, widths) + np.arange(int(widths.sum()))
    ignore = np.zeros(len(columns), dtype=np.uint64)  # bits of the first and last byte outside the span count as on
    ignore[offsets] |= ((0xFF << (8 - (starts & 7))) & 0xFF).astype(np.uint64)
    ignore[offsets + widths - 1] |= (0xFF >> (((ends - 1) & 7) + 1)).astype(np.uint64)
    # Step-major, eight units to a uint64, so that the reduction over each span's bytes runs along contiguous rows
    # (a reduceat along the rows of the unit-major array is ~10x slower); padding units count as on.
    gathered = np.full((len(columns), -(-units // 8) * 8), 0xFF, dtype=np.uint8)
    gathered[:, :units] = np.asarray(packed[:, columns]).T
    words = gathered.view(np.uint64)
    words |= (ignore * np.uint64(0x0101_0101_0101_0101))[:, None]
    reduced = np.bitwise_and.reduceat(words, offsets, axis=0)  # (m, units / 8)
    return reduced.view(np.uint8)[:, :units] == 0xFF


def _bit_at(packed: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(m, H) bool: each unit's bit at each step (``steps`` clipped into the text; callers mask the clipped ones)."""
    steps = np.clip(steps, 0, None)
    return ((np.asarray(packed[:, steps >> 3]).T >> (7 - (steps & 7)).astype(np.uint8)[:, None]) & 1).astype(bool)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, words.itemsize)
    return _BYTE_COUNTS[as_bytes].sum(axis=-1, dtype=np.uint8)


def _by_name(selection: list[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for name, unit in selection:
        grouped.setdefault(name, []).append(unit)
    return grouped

