"""Counting character n-grams with numpy: a 64-bit hash for every k-gram, sorted tables, Kneser–Ney counts.

Nothing here loops over characters in Python. Every k-gram of the text, for k = 1 … n, gets a 64-bit hash computed
for all start positions at once, one numpy pass per k; distinct k-grams are found by sorting those hashes, and
scoring looks k-grams up with ``np.searchsorted`` in the sorted tables.

The hash of the k-gram starting at position i extends the (k-1)-gram hash of the same start by one character:

    h_0(i) = SEED,        h_k(i) = fmix64(h_{k-1}(i) · M + x_{i+k-1} + 1)   (mod 2^64)

where ``fmix64`` is MurmurHash3's 64-bit finaliser (a bijection) and M an odd constant. This is a polynomial
rolling hash with a non-linear mixing step after every character: a plain polynomial hash mod 2^64 has
structured collisions (Thue–Morse strings collide for every odd multiplier), the mixed one behaves like a random
function for our purposes. For one k, the single characters get distinct hashes (the step is injective in x for
a fixed h), longer k-grams collide with probability 2^-64 per pair:

- two distinct training k-grams sharing a hash (their counts would merge): at most m²/2^65 for m distinct k-grams,
  about 5e-7 for m = 4.2 M, the most any order has on the corpora here (the 20-grams of the Linux train split),
  and under 1e-5 summed over all 20 orders;
- a test k-gram that never occurs in training matching a training hash: m/2^64 ≈ 2.3e-13 per look-up, about 3e-6
  for the 2 × 20 × 314 k look-ups of scoring the Linux test split with a 20-gram model.

A training-side collision merges two counts, and the distributions still sum to one (totals are computed from
the same merged counts); a test-side one gives one query a wrong count. Either would move the loss by a few
millionths of a nat at most, for a few characters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

SEED = np.uint64(0x2545F4914F6CDD1D)  # the hash of the empty string: h_0
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so that h -> h·M is a bijection mod 2^64
_FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)
# KenLM's `--discount_fallback` defaults: used when count-of-counts cannot give valid discounts (tiny texts).
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def extend_hashes(hashes: np.ndarray, chars: np.ndarray) -> np.ndarray:
    """One step of the rolling hash: the hashes of the grams one character longer (a new array).

    Args:
        hashes: (m,) uint64 hashes h_{k-1}(i).
        chars: (m,) ids x_{i+k-1} of the characters appended, any unsigned or non-negative integer dtype.
    """
    x = hashes * _MULTIPLIER
    x += chars.astype(np.uint64, copy=False)
    x += np.uint64(1)  # so that id 0 still changes the hash
    x ^= x >> _SHIFT
    x *= _FMIX_1
    x ^= x >> _SHIFT
    x *= _FMIX_2
    x ^= x >> _SHIFT
    return x


def lookup(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``queries`` in the sorted ``keys`` (clipped to a valid index) and whether each was found."""
    if len(queries) > 4096:
        # Binary searches for sorted queries walk nearby paths and stay in cache: about 5x faster for a test split.
        order = np.argsort(queries)
        where = np.empty(len(queries), dtype=np.intp)
        where[order] = np.searchsorted(keys, queries[order])
    else:
        where = np.searchsorted(keys, queries)
    np.minimum(where, len(keys) - 1, out=where)
    return where, keys[where] == queries


class Distinct(NamedTuple):
    """The distinct values of a hash array (see :func:`distinct`)."""

    keys: np.ndarray  # (m,) uint64, sorted
    position: np.ndarray  # (m,) one position where each key occurs
    counts: np.ndarray  # (m,) how often each key occurs
    inverse: np.ndarray  # (N,) int32 or int64: the index in `keys` of the hash at each position


def distinct(hashes: np.ndarray) -> Distinct:
    """Like ``np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)``, with less work.

    Any occurrence will do as a representative position, so an unstable sort serves (``np.unique`` sorts stably to
    find the first), and the inverse is kept in int32 when it fits: it is as long as the text.
    """
    order = np.argsort(hashes)
    ordered = hashes[order]
    starts = np.empty(len(ordered), dtype=bool)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    first = np.flatnonzero(starts)
    inverse = np.empty(len(hashes), dtype=np.int32 if len(hashes) < 2**31 else np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return Distinct(ordered[first], order[first], np.diff(np.append(first, len(ordered))), inverse)


def modified_kn_discounts(counts: np.ndarray) -> tuple[np.ndarray, bool]:
    """Chen & Goodman's discounts D1, D2, D3+ from the count-of-counts n_1 … n_4 of one order.

    ``Y = n1/(n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3``. When a count-of-
    counts is zero, or a discount falls outside (0, r] (so that ``c - D(c)`` could go negative, or no mass would
    be left for the lower order), the order gets :data:`FALLBACK_DISCOUNTS` instead, as KenLM's
    ``--discount_fallback`` does.

    Returns:
        The (3,) float64 discounts and ``True`` if they were estimated, ``False`` if they are the fallback.
    """
    n1, n2, n3, n4 = (float(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
    if min(n1, n2, n3) > 0:
        y = n1 / (n1 + 2 * n2)
        discounts = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
        if np.all(np.isfinite(discounts)) and np.all(discounts > 0) and np.all(discounts <= [1, 2, 3]):
            return discounts, True
    return np.array(FALLBACK_DISCOUNTS), False


@dataclass
class LevelTable:
    """The distinct L-grams of the training text and what the model needs to know about each.

    Args:
        keys: (m,) uint64, sorted: hashes of the distinct L-grams (level 0 holds the empty string alone).
        counts: (m,) how each L-gram counts at order L: its raw count at the model's top order, otherwise its
            continuation count N1+(• g), the number of distinct characters seen before it (the start of the text
            counting as one). Unused (zeros) at level 0.
        totals: (m,) ``Σ_w counts_{L+1}(g w)``: the L-gram as a context of order L+1. Zero for the one L-gram that
            only ends the text. Empty at the top level, which is no context.
        n1: (m,) how many w have ``counts_{L+1}(g w) == 1``; ``n2`` the same for 2 and ``n3`` for 3 or more.
    """

    keys: np.ndarray
    counts: np.ndarray
    totals: np.ndarray
    n1: np.ndarray
    n2: np.ndarray
    n3: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(a.nbytes for a in (self.keys, self.counts, self.totals, self.n1, self.n2, self.n3))


def count_levels(ids: np.ndarray, order: int, vocab_size: int) -> tuple[list[LevelTable], np.ndarray, np.ndarray]:
    """Build the level tables 0 … ``order`` and the discounts of orders 1 … ``order`` from training ids.

    Two hash arrays and three position-to-key arrays as long as the text are alive at a time (levels L-1, L and
    L+1), plus sort scratch: the working memory is below 100 bytes per training character on top of the tables.

    Args:
        ids: (N,) training ids, already checked to lie in ``[0, vocab_size)``, with ``N >= order``.
        order: n, the longest n-gram.
        vocab_size: V, which bounds how many continuations a context can have.

    Returns:
        The ``order + 1`` level tables, the (order + 1, 3) discounts (row k for order k; row 0 unused) and an
        (order + 1,) bool array telling which rows were estimated rather than the fallback.
    """
    length = len(ids)
    count_dtype = np.uint32 if length < 2**32 else np.uint64
    # N1+(h •) is at most V; a small dtype keeps the per-context statistics at one byte each for byte vocabularies.
    small_dtype = np.uint8 if vocab_size < 2**8 else np.uint16 if vocab_size < 2**16 else np.uint32
    discounts = np.zeros((order + 1, 3))
    estimated = np.zeros(order + 1, dtype=bool)
    empty = np.zeros(0, dtype=count_dtype)
    levels: list[LevelTable] = []

    prev: Distinct | None = None  # the (L-1)-grams; level 0, the empty string, needs no table of positions
    cur_hashes = extend_hashes(np.full(length, SEED, dtype=np.uint64), ids)  # h_1, length N
    cur = distinct(cur_hashes)
    for level in range(1, order + 1):
        if level < order:
            nxt_hashes = extend_hashes(cur_hashes[: length - level], ids[level:])  # h_{L+1}, length N - L
            nxt = distinct(nxt_hashes)
            # Each distinct (L+1)-gram x g adds one to the continuation count of its suffix g, which starts one later.
            counts = np.bincount(cur.inverse[nxt.position + 1], minlength=len(cur.keys)).astype(count_dtype)
            counts[cur.inverse[0]] += 1  # the L-gram that opens the text has "start" before it
        else:
            counts = cur.counts.astype(count_dtype)
        discounts[level], estimated[level] = modified_kn_discounts(counts)

        # Statistics of the (L-1)-gram prefixes as contexts of order L: a prefix starts where its L-gram does.
        prefix_at = np.zeros(len(cur.keys), dtype=np.intp) if prev is None else prev.inverse[cur.position]
        size = 1 if prev is None else len(prev.keys)
        totals = np.bincount(prefix_at, weights=counts, minlength=size).astype(count_dtype)
        n1, n2, n3 = (
            np.bincount(prefix_at[mask], minlength=size).astype(small_dtype)
            for mask in (counts == 1, counts == 2, counts >= 3)
        )
        if levels:
            levels[-1] = replace(levels[-1], totals=totals, n1=n1, n2=n2, n3=n3)
        else:
            empty_string = np.array([SEED], dtype=np.uint64)
            levels.append(LevelTable(empty_string, np.zeros(1, dtype=count_dtype), totals, n1, n2, n3))
        levels.append(LevelTable(cur.keys, counts, empty, empty, empty, empty))

        if level < order:
            prev, cur, cur_hashes = cur, nxt, nxt_hashes
    return levels, discounts, estimated
