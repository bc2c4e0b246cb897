"""``control_task``: a labelling with a feature's marginals that only the identity of each character can predict.

Hewitt & Liang (2019): a probe that scores well may have found the feature in the representation, or may only be
expressive enough to memorise *something* about every token type. Their control task gives each character type
(each token id) a random label, so that a probe can only succeed on it by decoding which character it is reading;
the probe's **selectivity** is its score on the feature minus its score on the control. A feature that is a
function of the character alone (``text[t]`` is a space) has a control just as easy to decode: selectivity near 0.
A feature of the context (inside a quotation) that the units carry beyond the current character: selectivity high.

The control keeps the feature's marginal distribution over the given positions:

- **binary feature:** a random subset of the types is labelled 1, chosen so that the share of positive positions
  is as close as this greedy rule gets to the feature's: the types in a random order, each one added when that
  brings the positive count closer to the feature's;
- **continuous feature:** each type gets one value drawn from the feature's values at the positions (its
  empirical distribution), so the control takes the feature's values with about its frequencies.
"""

from __future__ import annotations

import numpy as np


def control_task(types: np.ndarray, values: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Random labels per character type with the marginals of ``values`` (see the module docstring).

    Args:
        types: (N,) integers, the character (token) id at each position.
        values: (N,) the feature at the same positions: bool for a binary feature (the control is bool), numbers
            for a continuous one (the control is float64).
        seed: the random draw; equal arguments give equal labels.

    Returns:
        (N,) the control labels, one value per position, equal wherever ``types`` is equal.

    Raises:
        ValueError: arrays of different shapes, or fewer than two character types (no labelling of types varies).

    Example::

        >>> types = np.array([0, 1, 2, 0, 1, 2, 3, 3])
        >>> labels = control_task(types, np.array([1, 0, 0, 1, 0, 0, 0, 0], dtype=bool), seed=0)
        >>> int(labels.sum())  # two positive positions, like the feature: one type that occurs twice
        2
    """
    types, values = np.asarray(types), np.asarray(values)
    if types.ndim != 1 or types.shape != values.shape:
        raise ValueError(f"`types` and `values` must be 1-D of one length, got shapes {types.shape} and {values.shape}")
    kinds, index, counts = np.unique(types, return_inverse=True, return_counts=True)
    if len(kinds) < 2:
        raise ValueError(
            f"the positions hold {len(kinds)} character type(s); a control task labels types, so it needs at least 2"
        )
    rng = np.random.default_rng(seed)
    if values.dtype == np.bool_:
        wanted, total = int(values.sum()), 0
        chosen = np.zeros(len(kinds), dtype=bool)
        for kind in rng.permutation(len(kinds)):
            if abs(total + counts[kind] - wanted) < abs(total - wanted):
                chosen[kind] = True
                total += int(counts[kind])
        return chosen[index]
    drawn = rng.choice(values.astype(np.float64), size=len(kinds), replace=True)
    return drawn[index]
