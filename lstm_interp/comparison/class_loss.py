"""``class_loss``: the per-character loss of an LSTM and of an n-gram baseline, split by character class.

Karpathy, Johnson & Fei-Fei (2015, Section 4.3, Fig. 4) compare the LSTM with the best n-gram character by
character and find the LSTM's advantage concentrated on characters that need long-range structure: whitespace,
newlines, brackets and quotes. This splits both models' losses over the nine classes of
:func:`~lstm_interp.comparison.char_classes.char_class` (newline, whitespace, lowercase, uppercase, digit, quote,
bracket, punctuation, other; exact definitions there).

Definitions, for a text of T characters, scored on ``t = 1 … T-1`` (the first character has no prediction):

- the loss of a character is ``-log P(text[t] | text[:t])`` in nats, under each model;
- a class's ``count`` is the number of scored characters in it; its ``lstm_loss`` and ``ngram_loss`` are the means
  of the two models' losses over those characters, and ``difference = lstm_loss - ngram_loss`` (negative: the
  LSTM is better on that class);
- ``share`` is the class's part of the LSTM's total loss: ``count * lstm_loss / (sum of all losses)``.

The counts sum to T-1, and ``sum(count * lstm_loss) / (T-1)`` is the overall mean loss, for both models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_interp.comparison._checks import check_log_probs, check_text
from lstm_interp.comparison.char_classes import CHAR_CLASSES, CLASS_DESCRIPTIONS, char_class


@dataclass(frozen=True)
class ClassLossRow:
    """One character class.

    Args:
        name: the class, one of :data:`~lstm_interp.comparison.char_classes.CHAR_CLASSES`.
        count: scored characters of this class.
        lstm_loss: mean LSTM loss over them, in nats (NaN when ``count`` is 0).
        ngram_loss: mean n-gram loss over them, in nats (NaN when ``count`` is 0).
        share: this class's part of the LSTM's summed loss.
    """

    name: str
    count: int
    lstm_loss: float
    ngram_loss: float
    share: float

    @property
    def difference(self) -> float:
        """``lstm_loss - ngram_loss``: negative where the LSTM does better."""
        return self.lstm_loss - self.ngram_loss


@dataclass(frozen=True)
class ClassLoss:
    """Both models' mean loss per character class, from :func:`class_loss`.

    Args:
        rows: one row per class, in :data:`CHAR_CLASSES` order (classes absent from the text have ``count`` 0).
        num_chars: scored characters (the text's length minus one).
        lstm_loss: the LSTM's mean loss over all of them, in nats.
        ngram_loss: the n-gram's mean loss over all of them, in nats.
        ngram_order: the n-gram's order, when known.
    """

    rows: tuple[ClassLossRow, ...]
    num_chars: int
    lstm_loss: float
    ngram_loss: float
    ngram_order: int | None = None

    def __getitem__(self, name: str) -> ClassLossRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no class {name!r}; the classes are {[row.name for row in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (NaN means of empty classes become ``None``)."""
        return {
            "unit": "nats",
            "num_chars": self.num_chars,
            "ngram_order": self.ngram_order,
            "lstm_loss": _json_float(self.lstm_loss),
            "ngram_loss": _json_float(self.ngram_loss),
            "classes": [
                {
                    "name": row.name,
                    "description": CLASS_DESCRIPTIONS.get(row.name, ""),
                    "count": row.count,
                    "lstm_loss": _json_float(row.lstm_loss),
                    "ngram_loss": _json_float(row.ngram_loss),
                    "difference": _json_float(row.difference),
                    "share": _json_float(row.share),
                }
                for row in self.rows
            ],
        }

    def to_markdown(self) -> str:
        """A Markdown table of the classes present in the text."""
        ngram = f"{self.ngram_order}-gram" if self.ngram_order else "n-gram"
        lines = [
            f"| class | count | LSTM (nats) | {ngram} (nats) | difference |",
            "|---|---|---|---|---|",
        ]
        for row in self.rows:
            if row.count:
                lines.append(
                    f"| {row.name} | {row.count} | {row.lstm_loss:.3f} | {row.ngram_loss:.3f} | {row.difference:+.3f} |"
                )
        lines.append(
            f"| **all** | {self.num_chars} | {self.lstm_loss:.3f} | {self.ngram_loss:.3f} | "
            f"{self.lstm_loss - self.ngram_loss:+.3f} |"
        )
        return "\n".join(lines)


def class_loss(
    text: str,
    lstm_log_probs: np.ndarray | Sequence[float],
    ngram_log_probs: np.ndarray | Sequence[float],
    *,
    ngram_order: int | None = None,
) -> ClassLoss:
    """Split the LSTM's and the n-gram's per-character loss on ``text`` by character class.

    Args:
        text: the text both models scored.
        lstm_log_probs: (T-1,) the LSTM's ``log P(text[t] | text[:t])`` for ``t = 1 … T-1``
            (:func:`~lstm_interp.comparison.char_log_probs`).
        ngram_log_probs: (T-1,) the same for the n-gram
            (:meth:`~lstm_interp.comparison.NGramBaseline.char_log_probs`).
        ngram_order: the n-gram's order, recorded in the result and shown in tables and figures.

    Returns:
        A :class:`ClassLoss`; definitions in the module docstring.

    Raises:
        ValueError: a text of fewer than 2 characters, or log-probabilities of the wrong length (not T-1), not
            finite, or above 0.

    Example::

        >>> result = class_loss("ab\\n", np.log([0.5, 0.25]), np.log([0.25, 0.25]))
        >>> result["lowercase"].count, round(result["lowercase"].difference, 3)  # "b": ln 4 - ln 2 better
        (1, -0.693)
    """
    check_text(text)
    lstm = -check_log_probs(lstm_log_probs, text, "lstm_log_probs")
    ngram = -check_log_probs(ngram_log_probs, text, "ngram_log_probs")
    index = {name: i for i, name in enumerate(CHAR_CLASSES)}
    classes = np.fromiter((index[char_class(c)] for c in text[1:]), dtype=np.int64, count=len(text) - 1)
    counts = np.bincount(classes, minlength=len(CHAR_CLASSES))
    lstm_sums = np.bincount(classes, weights=lstm, minlength=len(CHAR_CLASSES))
    ngram_sums = np.bincount(classes, weights=ngram, minlength=len(CHAR_CLASSES))
    total = float(lstm.sum())
    rows = tuple(
        ClassLossRow(
            name=name,
            count=int(counts[i]),
            lstm_loss=float(lstm_sums[i] / counts[i]) if counts[i] else math.nan,
            ngram_loss=float(ngram_sums[i] / counts[i]) if counts[i] else math.nan,
            share=float(lstm_sums[i] / total) if total > 0 else math.nan,
        )
        for i, name in enumerate(CHAR_CLASSES)
    )
    return ClassLoss(rows, len(text) - 1, float(lstm.mean()), float(ngram.mean()), ngram_order)


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
