"""``unit_features``: for every unit of a trace, the features that explain it best, by ``find_cells``'s ranking rule.

:func:`~lstm_interp.analysis.explain_unit` answers "which features does this unit track?" for one unit. An atlas
asks it of every unit, so the work runs the other way round: :func:`~lstm_interp.find_cells` scores every unit
against one feature at a time (vectorised over units, with the feature's registered controls), and the rows are then
regrouped by unit. Each unit's rows are ordered by the ranking rule
(:func:`~lstm_interp.analysis.find_cells.row_rank`): rows that visibly switch and beat their controls first, then
rows that visibly switch, then flat ones, each tier by strength.

**Explained.** A unit is *explained* by its first row when that row passes the ranking rule (it visibly switches,
``|effect| >= 0.5``, and beats every control of its feature) with a strength of at least :data:`EXPLAINS_STRENGTH`
(an AUC of 0.75 or ``|r|`` of 0.5: the bar :mod:`~lstm_interp.analysis.control_scores` sets for a score given a
control). The others are the lecture's "hard to tell" units: no registered feature explains them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lstm_interp.analysis.control_scores import MIN_PARTIAL
from lstm_interp.analysis.find_cells import find_cells, row_rank
from lstm_interp.features import FEATURES, ConstantFeatureError, check_feature_values, compute_feature, get_feature
from lstm_interp.tracing import Trace

__all__ = ["EXPLAINS_STRENGTH", "UnitFeatures", "explains", "unit_features"]

EXPLAINS_STRENGTH = MIN_PARTIAL
"""The least strength (``2 * AUC - 1`` or ``|r|``) of a row that explains its unit."""


def explains(row: Mapping[str, Any]) -> bool:
    """Whether a ``CellScore.to_dict()`` row explains its unit: tier 0 of the ranking rule (visible, beats its
    controls or has none) and strength at least :data:`EXPLAINS_STRENGTH`."""
    tier, negative_strength = row_rank(row)
    return tier == 0 and -negative_strength >= EXPLAINS_STRENGTH


@dataclass(frozen=True)
class UnitFeatures:
    """The ranked feature rows of every unit.

    Args:
        rows: ``(layer, unit)`` -> up to ``top`` rows (``CellScore.to_dict()`` plus ``strength``), best first.
        scored: the features scored, in registry order.
        skipped: feature -> why it was not scored (constant on the text).
        num_steps: the characters scored.
    """

    rows: dict[tuple[str, int], list[dict[str, Any]]]
    scored: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    num_steps: int = 0

    def of(self, layer: str, unit: int) -> list[dict[str, Any]]:
        """The rows of one unit, best first (empty when no feature could be scored)."""
        return self.rows.get((layer, unit), [])


def unit_features(
    trace: Trace,
    quantity: str,
    *,
    layers: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    top: int = 5,
) -> UnitFeatures:
    """Score every unit of ``layers`` against every feature and keep each unit's ``top`` rows, best first.

    Args:
        trace: a trace with text (``trace.text``), holding ``quantity`` for each of ``layers``.
        quantity: the per-layer quantity scored (``"cell"``, ...).
        layers: the layers (default: all of the trace's).
        features: registered feature names (default: every registered feature); those constant on the text are
            skipped and listed with why, each with its registered controls where they can be scored.
        top: rows kept per unit.

    Raises:
        UnknownFeatureError: an unknown feature name (the message lists the registered ones).
        ValueError: a trace without text, a ``top`` below 1.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be a positive integer, got {top!r}")
    if trace.text is None:
        raise ValueError("the trace holds no text (it was traced from ids); trace the text to score features")
    names = list(dict.fromkeys(features)) if features is not None else list(FEATURES)
    chosen = [get_feature(name) for name in names]  # unknown names fail here, before any scoring
    layers = list(layers) if layers is not None else list(trace.layer_names)
    per_unit: dict[tuple[str, int], list[dict[str, Any]]] = {}
    scored, skipped = [], {}
    for feature in chosen:
        values = compute_feature(feature, trace.text)
        try:
            check_feature_values(values, feature.name, trace.num_steps, over="the atlas's feature sample")
        except ConstantFeatureError as err:
            skipped[feature.name] = str(err)
            continue
        table = find_cells(trace, feature, quantity, top=None, layers=layers)
        scored.append(feature.name)
        for row in table:
            data = row.to_dict() | {"strength": row.strength}
            per_unit.setdefault((row.layer, row.unit), []).append(data)
    ranked = {key: sorted(rows, key=row_rank)[:top] for key, rows in per_unit.items()}  # stable: registry order
    return UnitFeatures(ranked, tuple(scored), skipped, trace.num_steps)
