"""``error_breakdown``: sort an LSTM's errors into the categories of Karpathy, Johnson & Fei-Fei (2015, Section 4.4).

The paper "peels the onion": each error is removed by the first of a series of oracles that explains it, applied
in a fixed order, and the share each oracle removes is its category's size (their Fig. 7 pie chart). The order
matters, as the paper notes; we keep theirs. For a text of T characters scored on ``t = 1 … T-1``:

**Error** (the paper's definition): character ``text[t]`` is an error when the LSTM gave it probability below
``threshold`` (0.5) at the previous step: ``P_LSTM(text[t] | text[:t]) < threshold``.

**Word**: a maximal run of Unicode letters (regex ``[^\\W\\d_]+``; digits, ``_`` and apostrophes end a word);
words are compared case-sensitively.

The categories, each error going to the first that matches:

1. ``ngram`` — an n-gram oracle would get it right: at least one of the given n-gram models gives ``text[t]``
   probability ``>= threshold`` (the paper uses orders 1 to 9, "optimistic n-gram oracles").
2. ``memory_<n>``, for each window n in increasing order (the paper's 100, 500, 1000, 5000) — dynamic memory:
   ``text[t]`` lies inside a word, is not that word's first character, and the whole word occurs as a substring of
   the n characters just before the word starts (``text[s-n:s]`` for a word starting at ``s``). The paper: errors
   "in all words (starting with the second character) that can be found as a substring in the last n characters".
3. ``rare_words`` — ``text[t]`` lies inside a word (any of its characters) that occurs at most ``rare_max_count``
   times (the paper's largest, 5) as a word of the training text; words never seen in training count as rare.
4. ``word_model`` — the character before is whitespace, a newline or a quote (classes ``whitespace``, ``newline``,
   ``quote`` of :func:`~lstm_interp.comparison.char_classes.char_class`): choosing the next word. The paper:
   "all errors after a space, a quote or a newline".
5. ``punctuation`` — ``text[t]`` itself is punctuation: class ``punctuation`` (which includes symbols), ``quote``
   or ``bracket``. The paper: "errors on all punctuation".
6. ``boost`` — every remaining error. The paper removes these with oracles that boost the correct character's
   probability by a fixed amount; :attr:`ErrorBreakdown.boost_histogram` counts them by the probability they had,
   i.e. by how large a boost each needs to reach ``threshold``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_interp.comparison._checks import WORD, check_log_probs, check_text
from lstm_interp.comparison.char_classes import char_class
from lstm_interp.comparison.ngram_baseline import NGramBaseline

ArrayLike = np.ndarray | Sequence[float]
_AFTER_WORD_BREAK = frozenset({"whitespace", "newline", "quote"})
_PUNCTUATION = frozenset({"punctuation", "quote", "bracket"})
_BOOST_BINS = 5


@dataclass(frozen=True)
class ErrorCategory:
    """One category of errors.

    Args:
        name: ``"ngram"``, ``"memory_<n>"``, ``"rare_words"``, ``"word_model"``, ``"punctuation"`` or ``"boost"``.
        definition: the exact rule, in words.
        count: errors assigned to it.
        fraction: ``count`` over all errors (NaN when there are none).
    """

    name: str
    definition: str
    count: int
    fraction: float


@dataclass(frozen=True)
class ErrorBreakdown:
    """The LSTM's errors on a text, each assigned to the first category that explains it.

    Args:
        threshold: a character is an error when the LSTM gave it probability below this.
        num_chars: scored characters (T - 1).
        num_errors: how many of them are errors.
        categories: in the order they were applied; their counts sum to ``num_errors``.
        assignments: (T-1,) per scored character ``text[t]`` (entry ``t - 1``), the index of its category in
            ``categories``, or -1 when it is no error.
        boost_histogram: ``(low, high, count)``: errors of the ``boost`` category whose LSTM probability lies in
            ``[low, high)``, five equal bins over ``[0, threshold)``.
        oracle_orders: the orders of the n-gram oracles.
    """

    threshold: float
    num_chars: int
    num_errors: int
    categories: tuple[ErrorCategory, ...]
    assignments: np.ndarray
    boost_histogram: tuple[tuple[float, float, int], ...]
    oracle_orders: tuple[int, ...] = ()

    @property
    def error_rate(self) -> float:
        """Errors per scored character."""
        return self.num_errors / self.num_chars

    def __getitem__(self, name: str) -> ErrorCategory:
        for category in self.categories:
            if category.name == name:
                return category
        raise KeyError(f"no category {name!r}; the categories are {[c.name for c in self.categories]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: the definitions, counts and fractions (not the per-character assignments)."""
        return {
            "error_definition": f"P_LSTM(text[t] | text[:t]) < {self.threshold:g}",
            "threshold": self.threshold,
            "num_chars": self.num_chars,
            "num_errors": self.num_errors,
            "error_rate": self.error_rate,
            "oracle_orders": list(self.oracle_orders),
            "categories": [
                {
                    "name": c.name,
                    "definition": c.definition,
                    "count": c.count,
                    "fraction": c.fraction if self.num_errors else None,
                }
                for c in self.categories
            ],
            "boost_histogram": [{"low": low, "high": high, "count": n} for low, high, n in self.boost_histogram],
        }


def error_breakdown(
    text: str,
    lstm_log_probs: ArrayLike,
    *,
    ngrams: Sequence[NGramBaseline] | Mapping[int, ArrayLike],
    train_text: str,
    threshold: float = 0.5,
    memory_windows: Sequence[int] = (100, 500, 1000, 5000),
    rare_max_count: int = 5,
) -> ErrorBreakdown:
    """Assign each of the LSTM's errors on ``text`` to the first category that explains it.

    Args:
        text: the text the LSTM scored.
        lstm_log_probs: (T-1,) the LSTM's ``log P(text[t] | text[:t])`` for ``t = 1 … T-1``
            (:func:`~lstm_interp.comparison.char_log_probs`).
        ngrams: the n-gram oracles: fitted :class:`~lstm_interp.comparison.NGramBaseline` s (the paper uses orders
            1 to 9, fitted on the training text), or ``{order: (T-1,) log-probabilities}`` computed already.
        train_text: the LSTM's training text, for the word counts of the rare-words oracle.
        threshold: the probability below which a character is an error (the paper's 0.5).
        memory_windows: the dynamic-memory windows n, in characters (empty: no memory oracle).
        rare_max_count: a word is rare when it occurs at most this many times in ``train_text``.

    Returns:
        An :class:`ErrorBreakdown`; the definitions are in the module docstring.

    Raises:
        ValueError: a text of fewer than 2 characters, log-probabilities of the wrong length (not T-1), no n-gram
            oracle, ``threshold`` outside (0, 1), bad windows or ``rare_max_count``.
        VocabularyError: ``text`` has a character outside an oracle's vocabulary.

    Example::

        >>> oracle = NGramBaseline.fit("the cat. the hat. ", order=3)  # doctest: +SKIP
        >>> result = error_breakdown(text, lp, ngrams=[oracle], train_text=train)  # doctest: +SKIP
        >>> {c.name: c.count for c in result.categories}  # doctest: +SKIP
    """
    check_text(text)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 < threshold < 1:
        raise ValueError(f"`threshold` must be a probability in (0, 1), got {threshold!r}")
    windows = sorted(set(memory_windows))
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in windows):
        raise ValueError(f"`memory_windows` must be positive integers, got {list(memory_windows)!r}")
    if isinstance(rare_max_count, bool) or not isinstance(rare_max_count, int) or rare_max_count < 0:
        raise ValueError(f"`rare_max_count` must be an integer >= 0, got {rare_max_count!r}")
    if not isinstance(train_text, str):
        raise TypeError(f"`train_text` must be a string, got {type(train_text).__name__}")
    lstm = check_log_probs(lstm_log_probs, text, "lstm_log_probs")
    oracles = _oracle_log_probs(ngrams, text)
    log_threshold = np.log(threshold)

    errors = lstm < log_threshold  # entry t-1 is text[t]
    chars = text[1:]
    before = text[:-1]
    word_of, starts, ends = _words(text)
    words = [text[s:e] for s, e in zip(starts, ends, strict=True)]
    # Characters outside words point at a sentinel entry past the last word: never remembered, never rare.
    word_of = np.where(word_of[1:] >= 0, word_of[1:], len(words))
    in_word = word_of < len(words)
    not_first = in_word & (np.append(starts, len(text))[word_of] < np.arange(1, len(text)))

    orders = ", ".join(str(k) for k in oracles)
    need = _memory_needed(text, words, starts, word_of[errors & not_first], max(windows, default=0))
    counts = Counter(WORD.findall(train_text))
    rare = np.array([counts[w] <= rare_max_count for w in words] + [False], dtype=bool)
    # (name, definition, which scored characters the oracle explains), in the order the oracles are applied.
    rules: list[tuple[str, str, np.ndarray]] = [
        (
            "ngram",
            f"an n-gram oracle (orders {orders}) gives the character probability >= {threshold:g}",
            np.max(np.stack(list(oracles.values())), axis=0) >= log_threshold,
        ),
        *(
            (
                f"memory_{n}",
                f"inside a word, not its first character, and the word occurs in the {n} characters before it",
                not_first & (need[word_of] <= n),
            )
            for n in windows
        ),
        (
            "rare_words",
            f"inside a word that occurs at most {rare_max_count} times in the training text",
            rare[word_of],
        ),
        (
            "word_model",
            "the character before it is whitespace, a newline or a quote (the start of a word)",
            np.fromiter((char_class(c) in _AFTER_WORD_BREAK for c in before), dtype=bool, count=len(before)),
        ),
        (
            "punctuation",
            "the character is punctuation, a symbol, a quote or a bracket",
            np.fromiter((char_class(c) in _PUNCTUATION for c in chars), dtype=bool, count=len(chars)),
        ),
        ("boost", "every remaining error", np.ones(len(chars), dtype=bool)),
    ]

    assignments = np.full(len(chars), -1, dtype=np.int16)
    remaining = errors.copy()
    categories = []
    num_errors = int(errors.sum())
    for index, (name, definition, covers) in enumerate(rules):
        taken = remaining & covers
        assignments[taken] = index
        remaining &= ~covers
        count = int(taken.sum())
        categories.append(ErrorCategory(name, definition, count, count / num_errors if num_errors else float("nan")))
    boost_p = np.exp(lstm[assignments == len(rules) - 1])
    edges = np.linspace(0.0, threshold, _BOOST_BINS + 1)
    histogram, _ = np.histogram(np.minimum(boost_p, np.nextafter(threshold, 0)), bins=edges)
    boost = tuple((float(lo), float(hi), int(n)) for lo, hi, n in zip(edges[:-1], edges[1:], histogram, strict=True))
    return ErrorBreakdown(
        float(threshold), len(chars), num_errors, tuple(categories), assignments, boost, tuple(oracles)
    )


def _oracle_log_probs(ngrams: Sequence[NGramBaseline] | Mapping[int, ArrayLike], text: str) -> dict[int, np.ndarray]:
    """``{order: (T-1,) log-probabilities}`` of the oracles, checked."""
    if isinstance(ngrams, Mapping):
        given = {int(order): values for order, values in ngrams.items()}
    else:
        given = {}
        for i, baseline in enumerate(ngrams):
            if not isinstance(baseline, NGramBaseline):
                raise TypeError(f"`ngrams[{i}]` must be an NGramBaseline, got {type(baseline).__name__}")
            given[baseline.order] = baseline.char_log_probs(text)
    if not given:
        raise ValueError("`ngrams` is empty: the n-gram oracle needs at least one n-gram (the paper uses orders 1-9)")
    return {order: check_log_probs(values, text, f"ngrams[{order}]") for order, values in sorted(given.items())}


def _words(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T,) the index of the word each character is in (-1 outside words), and the words' starts and ends."""
    spans = np.array([m.span() for m in WORD.finditer(text)], dtype=np.int64).reshape(-1, 2)
    starts, ends = spans[:, 0], spans[:, 1]
    word_of = np.full(len(text), -1, dtype=np.int64)
    lengths = ends - starts
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    word_of[np.repeat(starts, lengths) + offsets] = np.repeat(np.arange(len(starts)), lengths)
    return word_of, starts, ends


def _memory_needed(
    text: str, words: list[str], starts: np.ndarray, error_words: np.ndarray, longest: int
) -> np.ndarray:
    """Per word, the shortest window (characters before the word's start) holding an earlier copy of it.

    Only the words that hold a memory-eligible error are searched; the others (words with no copy in the
    ``longest`` characters before them, and the sentinel after the last word) get a window larger than any.
    """
    need = np.full(len(words) + 1, np.iinfo(np.int64).max, dtype=np.int64)  # + the sentinel of non-words
    if not longest:
        return need
    for w in np.unique(error_words).tolist():
        start = int(starts[w])
        found = text.rfind(words[w], max(0, start - longest), start)  # the closest copy wholly before the word
        if found >= 0:
            need[w] = start - found
    return need
