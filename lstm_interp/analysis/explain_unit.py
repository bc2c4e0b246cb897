"""``explain_unit``: which features of the text one unit tracks best, the reverse question of ``find_cells``.

Each candidate feature is scored against the unit exactly as :func:`~lstm_interp.analysis.find_cells.find_cells`
scores units (ROC AUC for binary features, Pearson r for continuous ones). The two scales differ (AUC's chance
level is 0.5, r's is 0), so the features are ordered by :attr:`CellScore.strength`: ``|r|`` or the rank-biserial
correlation ``2 * AUC - 1``, both 0 at chance and 1 for a perfect match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lstm_interp.analysis._scores import score_columns
from lstm_interp.analysis.find_cells import CellTable, FeatureLike, _feature_values, _resolve_layer, _row
from lstm_interp.analysis.visible_effect import visible_effect
from lstm_interp.features import FEATURES, Feature
from lstm_interp.features.feature_values import ConstantFeatureError, check_feature_values
from lstm_interp.tracing import Trace

FeatureSet = Mapping[str, FeatureLike] | Sequence[str | Feature] | str | Feature | None


def explain_unit(
    trace: Trace,
    layer: str | int,
    unit: int,
    quantity: str = "cell",
    features: FeatureSet = None,
    top: int | None = 5,
) -> CellTable:
    """Score one unit against many features and return the best matches, strongest first.

    Args:
        trace: a trace of a text (named or callable features need ``trace.text``).
        layer: layer name (``"layers.1"``) or index.
        unit: unit index within the layer, ``0 <= unit < hidden size``.
        quantity: the per-layer quantity to score (``"cell"``, ``"hidden"``, ``"input_gate"``, ...).
        features: the candidates: ``None`` for every registered feature, a list of names / :class:`Feature` s /
            callables, or a mapping ``label -> feature`` whose values may also be precomputed arrays.
        top: how many rows to return (``None``: all scored features).

    Returns:
        A :class:`CellTable` with one row per feature, ordered by strength (ties keep the candidates' order);
        features that are constant on this text cannot be scored and are listed in ``skipped``.

    Raises:
        UnknownFeatureError: for an unknown feature name (the message lists the known ones).
        KeyError: if the trace lacks ``quantity`` for ``layer``.
        ValueError: an unknown layer, a unit out of range, a bad ``top``, no candidates, a feature of the wrong
            length, or non-finite activations of the unit.

    Example::

        >>> explain_unit(tr, "layers.1", 37)  # doctest: +SKIP
        CellTable(features that layers.1.cell unit 37 tracks; 5 rows, 20000 steps)
          #     layer  unit           feature  metric   score  sign  strength
          1  layers.1    37     inside_quotes     auc  0.9821     +    0.9642
          ...
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"`top` must be a positive integer or None, got {top!r}")
    name = _resolve_layer(trace, layer)
    activations = trace[f"{name}.{quantity}"]
    num_steps, hidden = activations.shape
    if isinstance(unit, bool) or not isinstance(unit, int | np.integer) or not 0 <= unit < hidden:
        raise ValueError(f"`unit` must be an integer in [0, {hidden}) for {name} (hidden size {hidden}), got {unit!r}")
    unit = int(unit)
    candidates = _candidates(features)
    if not candidates:
        raise ValueError("no features to score: `features` is empty (and so is the registry if it was None)")
    column = activations[:, unit : unit + 1]
    rows, skipped = [], []
    for label, feature in candidates:
        values, own_label, metric = _feature_values(trace, feature, None, num_steps)
        label = label or own_label
        try:
            check_feature_values(values, label, num_steps)
        except ConstantFeatureError:  # undefined score, not a weak one: say so instead of ranking it last
            skipped.append(label)
            continue
        raw = score_columns(column, values, metric, f"{name}.{quantity} unit {unit}")
        effect = visible_effect(column, values, metric, quantity)[0]
        rows.append(_row(name, unit, label, metric, float(raw[0]), quantity, effect))
    rows.sort(key=lambda row: -row.strength)
    title = f"features that {name}.{quantity} unit {unit} tracks"
    return CellTable(tuple(rows[:top]), quantity, title, num_steps, tuple(skipped))


def _candidates(features: FeatureSet) -> list[tuple[str | None, FeatureLike]]:
    """(label or None, feature) pairs; the label is None where the feature names itself."""
    if features is None:
        return [(None, feature) for feature in FEATURES.values()]
    if isinstance(features, str | Feature) or callable(features):
        return [(None, features)]
    if isinstance(features, Mapping):
        return [(str(label), feature) for label, feature in features.items()]
    return [(None, feature) for feature in features]
