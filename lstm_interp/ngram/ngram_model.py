"""Character n-gram language models with interpolated modified Kneser–Ney smoothing (the paper's Section 4.3).

Karpathy, Johnson & Fei-Fei (2015) compare their LSTMs with character n-gram models for n = 1 … 20. This module
implements those baselines with the smoothing of Chen & Goodman (1998), "An Empirical Study of Smoothing
Techniques for Language Modeling", Section 3.5 (interpolated, modified Kneser–Ney), as KenLM does.

Notation: training ids x_1 … x_N, vocabulary size V, model order n. A k-gram ``g = h w`` is a context ``h`` of
k-1 characters followed by a character ``w``; ``h'`` is ``h`` without its first (oldest) character.

Counts. The top order uses raw counts, the lower orders Kneser–Ney continuation counts::

    c_n(g) = number of times g occurs in the training ids
    c_k(g) = N1+(• g) = |{x : x g occurs}| + [g starts the training ids]        for k < n

(the start of the training text counts as one more distinct character before the k-gram that opens it, so
every k-gram that occurs has ``c_k >= 1``).

Discounts, three per order, from the count-of-counts ``n_r`` = number of distinct k-grams with ``c_k = r``::

    Y = n_1 / (n_1 + 2 n_2)
    D_k1 = 1 - 2 Y n_2 / n_1      D_k2 = 2 - 3 Y n_3 / n_2      D_k3+ = 3 - 4 Y n_4 / n_3
    D_k(0) = 0, D_k(1) = D_k1, D_k(2) = D_k2, D_k(c) = D_k3+ for c >= 3

If some ``n_r`` is zero or a discount is outside (0, r] (tiny texts, or orders whose counts are all large), the
order uses KenLM's fallback discounts (0.5, 1, 1.5); :attr:`NGramModel.discounts_estimated` tells which orders.

Context statistics and the back-off weight::

    T_k(h) = Σ_w c_k(h w)
    N_k1(h), N_k2(h), N_k3+(h) = how many w have c_k(h w) = 1, = 2, >= 3
    γ_k(h) = (D_k1 N_k1(h) + D_k2 N_k2(h) + D_k3+ N_k3+(h)) / T_k(h)

Interpolation, from a uniform distribution upwards::

    P_0(w) = 1 / V
    P_k(w | h) = (c_k(h w) - D_k(c_k(h w))) / T_k(h) + γ_k(h) P_{k-1}(w | h')     if T_k(h) > 0
    P_k(w | h) = P_{k-1}(w | h')                                                 if T_k(h) = 0 (unseen context)

and the model predicts ``P_n(w | the n-1 characters before w)``. Where fewer than n-1 characters precede (the
start of a sequence scored without ``context``), the chain stops at the order the available characters allow:
``P_{m+1}(w | all m of them)``. Each ``P_k(· | h)`` sums to 1 over the V characters because the discounted mass
``Σ_w D_k(c_k(h w))`` is exactly ``γ_k(h) T_k(h)``.

Characters never seen in training. V is the size of the vocabulary the caller passes, the training and test
character set, not only the training one. A character absent from training has ``c_k = 0`` at every order and
gets ``P = 1/V · Π_k γ_k(h_k) > 0``: every seen count class has a discount above 0, so ``γ_1 > 0`` and every
``γ_k(h) > 0`` of a seen context. No probability is ever 0 and the loss is always finite.

Representation. Each k-gram is a 64-bit hash (see :mod:`lstm_interp.ngram.ngram_counts`, which also gives the
collision probabilities: under 1e-5 for a 20-gram model of the largest corpus here); each order holds sorted arrays
of hashes, counts and context statistics, and scoring is a few ``np.searchsorted`` passes per order over the whole
test sequence. Memory is 19 bytes per distinct k-gram per order (for V < 256), plus up to about 100 bytes per
training character while fitting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral
from typing import Literal

import numpy as np

from lstm_interp.ngram.ngram_counts import SEED, LevelTable, count_levels, extend_hashes, lookup
from lstm_interp.vocab import VocabularyError

IdsLike = np.ndarray | Sequence[int]


def _check_ids(ids: IdsLike, vocab_size: int, what: str) -> np.ndarray:
    """``ids`` as a 1-D integer array, every id in ``[0, vocab_size)``."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"`{what}` must be a 1-D sequence of ids, got shape {array.shape}")
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"`{what}` must hold integer ids, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        at = int(np.flatnonzero(array == bad)[0])
        raise VocabularyError(f"`{what}` holds id {bad} (at position {at}), outside the vocabulary [0, {vocab_size})")
    return array


class NGramModel:
    """A character n-gram model with interpolated modified Kneser–Ney smoothing, fitted on an array of ids.

    Build one with :meth:`fit`. The formulas are in the module docstring; ``log_probs_per_char`` gives the
    log-probability of every character of a sequence, for comparing with an LSTM character by character.

    Raises:
        ValueError: from :meth:`fit`, for an order below 1, an empty training text or an order larger than it.
        VocabularyError: for ids outside ``[0, vocab_size)``, in training or scoring.

    Example::

        >>> ids = np.array([0, 1, 2] * 1000)  # "abcabc..."
        >>> model = NGramModel.fit(ids, order=3, vocab_size=4)
        >>> round(model.score(np.array([0, 1, 2] * 10)), 2)  # nats per character; the first one has no context
        0.05
        >>> int(model.probabilities([0, 1]).argmax())  # after "ab" comes "c"
        2
        >>> float(model.probabilities([0, 1])[3]) > 0  # id 3 never occurs, yet has a probability
        True
    """

    def __init__(
        self, levels: list[LevelTable], discounts: np.ndarray, estimated: np.ndarray, vocab_size: int, length: int
    ) -> None:
        self._levels = levels
        self._discounts = discounts
        self._estimated = estimated
        self._vocab_size = vocab_size
        self._train_length = length

    @classmethod
    def fit(cls, ids: IdsLike, order: int, vocab_size: int) -> NGramModel:
        """Count the n-grams of ``ids`` (for orders 1 … ``order``) and estimate the discounts.

        Args:
            ids: (N,) training ids, e.g. the train split of an :class:`~lstm_interp.data.EncodedCorpus`
                (a memory-mapped array is read, not copied).
            order: n, the longest n-gram: the model sees the n-1 characters before the one it predicts.
            vocab_size: V, the number of characters the model spreads probability over: every id to be scored must
                be below it. Use the training and test character set.

        Raises:
            ValueError: for ``order < 1``, a ``vocab_size`` below 1, an empty ``ids`` or ``order > len(ids)``.
            VocabularyError: if an id lies outside ``[0, vocab_size)``.
        """
        if not isinstance(order, Integral) or isinstance(order, bool) or order < 1:
            raise ValueError(f"`order` must be an integer >= 1, got {order!r}")
        if not isinstance(vocab_size, Integral) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"`vocab_size` must be an integer >= 1, got {vocab_size!r}")
        array = _check_ids(ids, int(vocab_size), "ids")
        if array.size == 0:
            raise ValueError("cannot fit an n-gram model on an empty text (`ids` has no ids)")
        if order > array.size:
            raise ValueError(f"n larger than the text: order {order} but the training text has {array.size} characters")
        levels, discounts, estimated = count_levels(array, int(order), int(vocab_size))
        return cls(levels, discounts, estimated, int(vocab_size), int(array.size))

    # ------------------------------------------------------------------ properties
    @property
    def order(self) -> int:
        """n: the model conditions on the n-1 previous characters."""
        return len(self._levels) - 1

    @property
    def vocab_size(self) -> int:
        """V: the number of characters every distribution covers."""
        return self._vocab_size

    @property
    def discounts(self) -> np.ndarray:
        """(order, 3) array: row k-1 holds (D_k1, D_k2, D_k3+) of order k."""
        return self._discounts[1:].copy()

    @property
    def discounts_estimated(self) -> np.ndarray:
        """(order,) bool: whether order k's discounts came from its count-of-counts (else the fallback)."""
        return self._estimated[1:].copy()

    @property
    def num_ngrams(self) -> tuple[int, ...]:
        """Distinct k-grams of the training text for k = 1 … order."""
        return tuple(len(level.keys) for level in self._levels[1:])

    @property
    def nbytes(self) -> int:
        """Bytes held by the model's tables."""
        return sum(level.nbytes for level in self._levels)

    def __repr__(self) -> str:
        return (
            f"NGramModel(order={self.order}, vocab_size={self.vocab_size}, train_length={self._train_length}, "
            f"nbytes={self.nbytes})"
        )

    # ------------------------------------------------------------------ scoring
    def _interpolate(self, level: int, p: np.ndarray, contexts: np.ndarray, grams: np.ndarray) -> np.ndarray:
        """Lift ``P_level(w | h')`` to ``P_{level+1}(w | h)`` for contexts ``h`` of ``level`` characters.

        Args:
            level: the context length L; the result is the distribution of order L+1.
            p: (m,) the lower-order probabilities of each query.
            contexts: (m,) hashes of the queries' contexts (L characters).
            grams: (m,) hashes of the queries' (L+1)-grams, the context followed by the character asked about.
        """
        context_table, gram_table = self._levels[level], self._levels[level + 1]
        at, found = lookup(context_table.keys, contexts)
        totals = np.where(found, context_table.totals[at], 0).astype(np.float64)
        seen = totals > 0
        if not seen.any():
            return p
        d1, d2, d3 = self._discounts[level + 1]
        backoff_mass = d1 * context_table.n1[at] + d2 * context_table.n2[at] + d3 * context_table.n3[at]
        gram_at, gram_found = lookup(gram_table.keys, grams)
        counts = np.where(gram_found, gram_table.counts[gram_at], 0).astype(np.float64)
        discount = np.select([counts == 0, counts == 1, counts == 2], [0.0, d1, d2], default=d3)
        lifted = (counts - discount + backoff_mass * p) / np.where(seen, totals, 1.0)
        return np.where(seen, lifted, p)

    def _log_probs(self, full: np.ndarray, positions: np.ndarray, asked: np.ndarray) -> np.ndarray:
        """``log P(asked[j] | the n-1 ids of full before positions[j])`` for every j, one numpy pass per order.

        Args:
            full: (F,) int64 ids: the history and the scored sequence.
            positions: (m,) where each query's character sits, in ``[0, F]`` (F: just after the end).
            asked: (m,) the id whose probability each query asks for.
        """
        p = np.full(len(positions), 1.0 / self._vocab_size)
        hashes = np.full(len(full) + 1, SEED, dtype=np.uint64)  # h_L(i) of the L ids from start i, for i <= F - L
        for level in range(min(self.order, len(full) + 1)):
            # A query at position t has the context full[t-L:t] when t >= L; with fewer ids before it, it keeps
            # the distribution of the longest context it has.
            active = positions >= level
            if not active.any():
                break
            contexts = hashes[positions[active] - level]
            grams = extend_hashes(contexts, asked[active])
            p[active] = self._interpolate(level, p[active], contexts, grams)
            if level + 1 < self.order:
                hashes = extend_hashes(hashes[: len(full) - level], full[level:])
        return np.log(p)

    def _history(self, context: IdsLike | None) -> np.ndarray:
        """The last n-1 ids of ``context`` (checked), as int64."""
        history = _check_ids([] if context is None else context, self._vocab_size, "context").astype(np.int64)
        return history[max(0, len(history) - (self.order - 1)) :]

    def log_probs_per_char(self, ids: IdsLike, context: IdsLike | None = None) -> np.ndarray:
        """The natural log-probability of each character of ``ids`` given the characters before it.

        Entry t is ``log P(ids[t] | the n-1 characters before it)``, those characters taken from ``context``
        followed by ``ids[:t]``. An LSTM's per-character loss on the same split is ``-`` this, position by position.

        Args:
            ids: (T,) ids to score, e.g. the test split.
            context: ids that come just before ``ids[0]`` (e.g. the end of the validation split); only the last
                n-1 are used. Without it the first n-1 characters get a shorter context (see the module docstring).

        Returns:
            (T,) float64 array of log-probabilities (nats, all finite and <= 0).

        Raises:
            VocabularyError: for an id outside ``[0, vocab_size)``.
        """
        targets = _check_ids(ids, self._vocab_size, "ids").astype(np.int64)
        history = self._history(context)
        positions = np.arange(len(history), len(history) + len(targets))
        return self._log_probs(np.concatenate([history, targets]), positions, targets)

    def log_probs_of(self, next_id: int, ids: IdsLike, context: IdsLike | None = None) -> np.ndarray:
        """The natural log-probability of one character ``next_id`` in place of each character of ``ids``.

        Entry t is ``log P(next_id | the n-1 characters before ids[t])``: e.g. how strongly the model expects a
        ``}`` at every position of the test split.

        Args:
            next_id: the id asked about.
            ids: (T,) the sequence whose positions are queried.
            context: ids that come just before ``ids[0]``; see :meth:`log_probs_per_char`.

        Raises:
            VocabularyError: for an id outside ``[0, vocab_size)``.
        """
        _check_ids([next_id], self._vocab_size, "next_id")
        targets = _check_ids(ids, self._vocab_size, "ids").astype(np.int64)
        history = self._history(context)
        positions = np.arange(len(history), len(history) + len(targets))
        asked = np.full(len(targets), int(next_id), dtype=np.int64)
        return self._log_probs(np.concatenate([history, targets]), positions, asked)

    def score(self, ids: IdsLike, context: IdsLike | None = None, *, unit: Literal["nats", "bits"] = "nats") -> float:
        """The mean loss per character of ``ids`` (cross-entropy), in nats or bits.

        Args:
            ids: (T,) ids to score, at least one.
            context: ids that come just before ``ids[0]``; see :meth:`log_probs_per_char`.
            unit: ``"nats"`` (natural log, as the paper reports) or ``"bits"`` (nats / ln 2).

        Raises:
            ValueError: for an empty ``ids`` or an unknown ``unit``.
            VocabularyError: for an id outside ``[0, vocab_size)``.
        """
        if unit not in ("nats", "bits"):
            raise ValueError(f"`unit` must be 'nats' or 'bits', got {unit!r}")
        log_probs = self.log_probs_per_char(ids, context)
        if log_probs.size == 0:
            raise ValueError("cannot score an empty sequence (`ids` has no ids)")
        nats = -float(log_probs.mean())
        return nats if unit == "nats" else nats / math.log(2)

    def probabilities(self, context: IdsLike) -> np.ndarray:
        """The (V,) distribution of the next character after ``context`` (its last n-1 ids are used).

        Raises:
            VocabularyError: for an id outside ``[0, vocab_size)``.
        """
        history = self._history(context)
        positions = np.full(self._vocab_size, len(history))
        return np.exp(self._log_probs(history, positions, np.arange(self._vocab_size)))

    def log_prob(self, context: IdsLike, next_id: int) -> float:
        """The natural log-probability of ``next_id`` after ``context`` (its last n-1 ids are used).

        Raises:
            VocabularyError: for an id outside ``[0, vocab_size)``.
        """
        _check_ids([next_id], self._vocab_size, "next_id")
        history = self._history(context)
        return float(self._log_probs(history, np.array([len(history)]), np.array([int(next_id)]))[0])
