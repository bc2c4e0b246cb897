"""``busiest_window``: the stretch of a text where a feature changes most, for a figure that should show a match.

A picture of a quote cell is convincing only where quotes open and close; a picture of a brace-depth cell only where
the depth rises and falls. Given a feature's values over a text and a window length, this finds that stretch:

- binary feature: the window with the most on/off transitions (ties: the one with the feature on closest to half
  of the time, then the earliest);
- continuous feature: the window where the feature both rises and falls most: the largest ``min(rise, fall)``,
  where ``rise`` is the largest increase from an earlier step to a later one inside the window and ``fall`` the
  largest decrease (so a brace depth that climbs three levels and comes back down beats one that only climbs);
  ties: the widest range, then the most changes of value, then the earliest.
"""

from __future__ import annotations

import numpy as np


def busiest_window(values: np.ndarray, length: int) -> slice:
    """The ``length`` steps of ``values`` where the feature changes most (see the module docstring).

    Args:
        values: (T,) a feature's values, bool for a binary feature, numbers for a continuous one.
        length: the window's length; the whole text if it is not longer.

    Returns:
        ``slice(start, start + length)`` within ``[0, T)``.

    Raises:
        ValueError: ``length`` below 1 or an empty ``values``.

    Example::

        >>> busiest_window(np.array([0, 0, 0, 1, 0, 1, 0, 0], dtype=bool), 4)
        slice(2, 6, None)
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"`length` must be a positive integer, got {length!r}")
    values = np.asarray(values)
    T = len(values)
    if T == 0:
        raise ValueError("`values` is empty; a window needs at least one step")
    if length >= T:
        return slice(0, T)
    changes = np.concatenate([[0], (values[1:] != values[:-1]).astype(np.int64)])  # (T,) 1 where a step differs
    # Changes strictly inside each window [s, s + length): steps s + 1 ... s + length - 1.
    cumulative = np.concatenate([[0], np.cumsum(changes)])
    starts = np.arange(T - length + 1)
    inside = cumulative[starts + length] - cumulative[starts + 1]
    if values.dtype == np.bool_:
        on = np.concatenate([[0], np.cumsum(values.astype(np.int64))])
        balance = -np.abs((on[starts + length] - on[starts]) / length - 0.5)
        keys = (inside, balance)
    else:
        x = values.astype(np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(x, length)  # (T - length + 1, length), a view
        width = windows.max(axis=1) - windows.min(axis=1)
        keys = (_swing(windows), width, inside)
    best = int(np.lexsort((-starts, *keys[::-1]))[-1])  # lexsort sorts by the last key first; ties: earliest start
    return slice(int(starts[best]), int(starts[best]) + length)


def _swing(windows: np.ndarray, block: int = 4096) -> np.ndarray:
    """Per window (row), ``min(rise, fall)``: the largest later-minus-earlier increase and decrease inside it.

    Computed in blocks of rows, so the running minima and maxima take ``block * length`` floats at a time.
    """
    out = np.empty(len(windows))
    for i in range(0, len(windows), block):
        rows = windows[i : i + block]
        rise = (rows - np.minimum.accumulate(rows, axis=1)).max(axis=1)
        fall = (np.maximum.accumulate(rows, axis=1) - rows).max(axis=1)
        out[i : i + block] = np.minimum(rise, fall)
    return out
