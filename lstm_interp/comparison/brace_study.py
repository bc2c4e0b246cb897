"""``brace_study``: how well the LSTM and an n-gram predict ``}`` as the matching ``{`` lies further back.

Karpathy, Johnson & Fei-Fei (2015, Section 4.3, Fig. 6 left) bucket the closing braces of the Linux kernel test
set by the distance to their opening brace and plot the mean probability each model gives the ``}``: an n-gram,
blind beyond its n-1 characters, falls to chance as the distance grows, while the LSTM keeps track. Definitions:

- **matching**: the text is read left to right with a stack; a ``{`` is pushed, a ``}`` pops the innermost open
  ``{`` and forms a pair with it. A ``}`` with no open ``{`` (unmatched) and a ``{`` never closed are counted and
  left out. Every brace counts, including braces inside string literals, character literals and comments;
- **distance**: ``position of '}' - position of '{'`` in characters, so ``{}`` has distance 1;
- **probability**: ``P(text[t] = '}' | text[:t])`` of each model at the ``}``'s position ``t`` (``exp`` of the
  per-character log-probability);
- **bins**: ``(0, w], (w, 2w], …, (m - w, m]`` for bin width ``w`` and ``m = max_distance``, then one open bin
  ``(m, ∞)``; per bin the number of pairs and each model's mean probability (``None``/NaN for an empty bin).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_interp.comparison._checks import check_log_probs, check_text

_BRACES = re.compile(r"[{}]")


class NoMatchedBracesError(ValueError):
    """The text holds no ``}`` that closes an earlier ``{``, so there is nothing to study."""


@dataclass(frozen=True)
class BraceBin:
    """The closing braces whose distance to their ``{`` lies in ``(low, high]`` (``high`` ``None``: no bound).

    Args:
        low: exclusive lower bound of the distance.
        high: inclusive upper bound, or ``None`` for the last, open bin.
        count: matched ``}`` in this bin.
        lstm_probability: the LSTM's mean probability of those ``}`` (NaN when ``count`` is 0).
        ngram_probability: the n-gram's mean probability of those ``}`` (NaN when ``count`` is 0).
    """

    low: int
    high: int | None
    count: int
    lstm_probability: float
    ngram_probability: float

    @property
    def label(self) -> str:
        """``"1-20"``, ..., ``">200"``."""
        return f">{self.low}" if self.high is None else f"{self.low + 1}-{self.high}"


@dataclass(frozen=True)
class BraceStudy:
    """Every matched ``}`` of a text with both models' probability for it, and their means per distance bin.

    Args:
        positions: (n,) positions of the matched ``}`` in the text, in order.
        distances: (n,) distance of each to its ``{``, in characters.
        lstm_probabilities: (n,) the LSTM's probability of each ``}``.
        ngram_probabilities: (n,) the n-gram's probability of each ``}``.
        bins: the distance bins, nearest first.
        unmatched_closing: ``}`` with no open ``{`` before them.
        unclosed_opening: ``{`` still open at the end of the text.
        ngram_order: the n-gram's order, when known.
    """

    positions: np.ndarray
    distances: np.ndarray
    lstm_probabilities: np.ndarray
    ngram_probabilities: np.ndarray
    bins: tuple[BraceBin, ...]
    unmatched_closing: int = 0
    unclosed_opening: int = 0
    ngram_order: int | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: the bins and one entry per matched ``}``."""
        return {
            "num_matched": len(self),
            "unmatched_closing": self.unmatched_closing,
            "unclosed_opening": self.unclosed_opening,
            "ngram_order": self.ngram_order,
            "lstm_probability": _json_float(float(self.lstm_probabilities.mean())),
            "ngram_probability": _json_float(float(self.ngram_probabilities.mean())),
            "bins": [
                {
                    "low": b.low,
                    "high": b.high,
                    "label": b.label,
                    "count": b.count,
                    "lstm_probability": _json_float(b.lstm_probability),
                    "ngram_probability": _json_float(b.ngram_probability),
                }
                for b in self.bins
            ],
            "braces": [
                {"position": int(p), "distance": int(d), "lstm_probability": float(a), "ngram_probability": float(b)}
                for p, d, a, b in zip(
                    self.positions, self.distances, self.lstm_probabilities, self.ngram_probabilities, strict=True
                )
            ],
        }


def brace_study(
    text: str,
    lstm_log_probs: np.ndarray | Sequence[float],
    ngram_log_probs: np.ndarray | Sequence[float],
    *,
    bin_width: int = 20,
    max_distance: int = 200,
    ngram_order: int | None = None,
) -> BraceStudy:
    """Match the braces of ``text`` and compare both models' probability of each ``}`` with its distance to ``{``.

    Args:
        text: code with ``{ }`` blocks (C, Java, JSON, ...).
        lstm_log_probs: (T-1,) the LSTM's ``log P(text[t] | text[:t])`` for ``t = 1 … T-1``
            (:func:`~lstm_interp.comparison.char_log_probs`).
        ngram_log_probs: (T-1,) the same for the n-gram
            (:meth:`~lstm_interp.comparison.NGramBaseline.char_log_probs`).
        bin_width: width of each distance bin, in characters.
        max_distance: where the last closed bin ends; longer distances share one open bin.
        ngram_order: the n-gram's order, recorded in the result.

    Returns:
        A :class:`BraceStudy`; definitions in the module docstring.

    Raises:
        NoMatchedBracesError: (a ``ValueError``) the text has no braces, or no ``}`` closing an earlier ``{``.
        ValueError: a text of fewer than 2 characters, log-probabilities of the wrong length (not T-1), bad bins.

    Example::

        >>> text = "{a{b}c}"  # distances 2 (inner pair) and 6 (outer pair)
        >>> study = brace_study(text, np.log(np.full(6, 0.5)), np.log(np.full(6, 0.25)), bin_width=5)
        >>> study.distances.tolist(), [b.count for b in study.bins[:2]]
        ([2, 6], [1, 1])
    """
    check_text(text)
    for name, value in (("bin_width", bin_width), ("max_distance", max_distance)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    if max_distance < bin_width:
        raise ValueError(f"`max_distance` ({max_distance}) must be at least `bin_width` ({bin_width})")
    lstm = check_log_probs(lstm_log_probs, text, "lstm_log_probs")
    ngram = check_log_probs(ngram_log_probs, text, "ngram_log_probs")
    opens, closes, unmatched, unclosed = _match_braces(text)
    if not len(closes):
        counts = f"{text.count('{')} '{{' and {text.count('}')} '}}'"
        raise NoMatchedBracesError(
            f"the brace study needs a '}}' that closes an earlier '{{', but the text ({len(text)} characters) has "
            f"{counts}"
            + (" (no braces at all)" if "{" not in text and "}" not in text else ", and none match")
            + "; give it code with { } blocks"
        )
    distances = closes - opens
    p_lstm = np.exp(lstm[closes - 1])  # entry t-1 scores text[t]
    p_ngram = np.exp(ngram[closes - 1])
    edges = [*range(0, max_distance, bin_width), max_distance]
    bins = []
    for low, high in zip(edges, [*edges[1:], None], strict=True):
        inside = (distances > low) & (distances <= high) if high is not None else distances > low
        n = int(inside.sum())
        bins.append(
            BraceBin(
                low=low,
                high=high,
                count=n,
                lstm_probability=float(p_lstm[inside].mean()) if n else math.nan,
                ngram_probability=float(p_ngram[inside].mean()) if n else math.nan,
            )
        )
    return BraceStudy(closes, distances, p_lstm, p_ngram, tuple(bins), unmatched, unclosed, ngram_order)


def _match_braces(text: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Positions of each matched ``{`` and its ``}`` (ordered by the ``}``), unmatched ``}``, unclosed ``{``."""
    stack: list[int] = []
    opens: list[int] = []
    closes: list[int] = []
    unmatched = 0
    for match in _BRACES.finditer(text):  # only the braces, not every character, pass through Python
        position, char = match.start(), match.group()
        if char == "{":
            stack.append(position)
        elif char == "}":
            if stack:
                opens.append(stack.pop())
                closes.append(position)
            else:
                unmatched += 1
    return np.array(opens, dtype=np.int64), np.array(closes, dtype=np.int64), unmatched, len(stack)


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
