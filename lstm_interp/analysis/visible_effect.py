"""``visible_effect``: how far a unit's colour moves with a feature, on the -1..+1 scale every picture shows.

AUC and Pearson r are rank and correlation statistics: they count differences far below what a picture can show.
A cell state pinned at tanh(c) = -1.00 on one side of a feature and -0.97 on the other has an AUC near 1, and its
picture is one solid red band. The effect says how much of the colour scale the feature moves:

- binary feature: ``mean(d | feature = 1) - mean(d | feature = 0)``;
- continuous feature: the least-squares slope of ``d`` on the feature times the feature's spread, its 5th to
  95th percentile (the full range when those two are equal);

where ``d`` is the displayed value (:func:`~lstm_interp.tracing.quantities.display_values`: ``tanh(c)`` for the cell
state, ``2g - 1`` for a gate ``g``, hidden states as they are). It runs from -2 to +2; its sign says whether the
unit is higher (bluer) where the feature is higher. A unit *visibly switches* when ``|effect| >= MIN_EFFECT``, a
quarter of the colour scale: the step from white to a clear tint.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from lstm_interp.tracing.quantities import display_values

MIN_EFFECT = 0.5  # a quarter of the -1..+1 colour scale
_CHUNK = 8192  # time steps per chunk: the displayed copy of (8192, 512) float32 is 16 MB


def visible_effect(x: Tensor, values: np.ndarray, metric: str, quantity: str) -> np.ndarray:
    """(H,) the signed effect of every column of ``x`` (T, H), on the displayed scale (see the module docstring).

    Args:
        x: (T, H) raw values of ``quantity`` (the cell state, not its tanh).
        values: (T,) the feature: bool for ``metric == "auc"``, numbers for ``"pearson"``.
        metric: ``"auc"`` (binary feature) or ``"pearson"`` (continuous feature).
        quantity: what ``x`` holds, which says how it is displayed.

    Example::

        >>> x = torch.tensor([[-9.0, -3.0], [-9.0, 3.0], [-8.0, -3.0], [-8.0, 3.0]])  # unit 0 pinned at -1
        >>> visible_effect(x, np.array([False, True, False, True]), "auc", "cell").round(2).tolist()
        [0.0, 1.99]
    """
    T, H = x.shape
    if metric == "auc":
        labels = np.asarray(values, dtype=bool)
        inside, outside = np.zeros(H), np.zeros(H)
        for i in range(0, T, _CHUNK):
            shown = display_values(x[i : i + _CHUNK], quantity).numpy().astype(np.float64)
            part = labels[i : i + _CHUNK]
            inside += shown[part].sum(axis=0)
            outside += shown[~part].sum(axis=0)
        n1 = int(labels.sum())
        return inside / n1 - outside / (T - n1)
    feature = np.asarray(values, dtype=np.float64)
    centred = feature - feature.mean()
    spread = np.percentile(feature, 95) - np.percentile(feature, 5)
    if spread == 0:  # a feature that is mostly one value: its whole range is what varies
        spread = feature.max() - feature.min()
    covariance = np.zeros(H)
    for i in range(0, T, _CHUNK):
        shown = display_values(x[i : i + _CHUNK], quantity).numpy().astype(np.float64)
        covariance += centred[i : i + _CHUNK] @ shown  # sum of (f - mean f) * d: the mean of d cancels
    return covariance / (centred @ centred) * spread
