"""Checks shared by the comparison functions: per-character log-probability arrays aligned with a text.

Every comparison scores the characters ``text[1:]``: a model reads ``text[t-1]`` and predicts ``text[t]``, and the
first character has no prediction (no model has read anything before it). A log-probability array of a text of
``T`` characters therefore has ``T - 1`` entries, entry ``t - 1`` being ``log P(text[t] | text[:t])``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# A word: a maximal run of Unicode letters (no digits, no underscore, no apostrophe).
WORD = re.compile(r"[^\W\d_]+")


def check_text(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    if len(text) < 2:
        raise ValueError(
            f"`text` must have at least 2 characters (the first has no prediction), got {len(text)}: {text!r}"
        )
    return text


def check_log_probs(values: np.ndarray | Sequence[float], text: str, what: str) -> np.ndarray:
    """``values`` as a float64 (T-1,) array of finite log-probabilities for the characters ``text[1:]``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) != len(text) - 1:
        raise ValueError(
            f"`{what}` has shape {array.shape} but the text has {len(text)} characters; expected ({len(text) - 1},): "
            "one log-probability per character after the first"
        )
    bad = np.flatnonzero(~np.isfinite(array) | (array > 1e-6))
    if bad.size:
        raise ValueError(
            f"`{what}` must hold finite log-probabilities <= 0; entry {int(bad[0])} is {float(array[bad[0]])!r} "
            f"({bad.size} bad entries)"
        )
    return np.minimum(array, 0.0)
