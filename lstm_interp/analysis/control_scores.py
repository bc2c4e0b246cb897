"""``ControlScore``: does a unit track a feature, or only a control that the feature implies?

Every if condition is inside parentheses, every quotation lies on a line of dialogue and every URL is a run without
spaces. A parenthesis unit therefore scores well on if conditions too, and a picture of it beside an if condition
looks like an "if cell". So each candidate unit is also scored against the feature's *control* ``C`` (a binary
feature, :attr:`~lstm_interp.features.Feature.controls`):

- ``score``: how well the unit tracks ``C`` itself, in the feature's metric (``max(AUC, 1 - AUC)`` for a binary
  feature, ``|r|`` for a continuous one);
- ``partial``: how well it tracks the feature *given* ``C``. Binary feature: the stratified AUC, pairs compared
  only within ``C = 1`` and within ``C = 0`` (when the feature implies ``C``, that is "if conditions against the
  other parentheses"). Continuous feature: the partial correlation given ``C``. It is oriented by the unit's own
  sign, so 0.5 (AUC) or 0 (r) is chance and 1 is perfect.

- ``partial_effect`` (binary features): the same given the control on the displayed scale, the difference of the
  displayed means between the feature's classes within each class of the control, so that a unit pinned at -1 in
  every parenthesis does not pass by a rank difference no picture shows.

The rule (:meth:`ControlScore.beaten_by`): a unit is a cell of the feature, not of its control, when it scores
higher on the feature than on the control, its partial strength is at least :data:`MIN_PARTIAL` (an AUC of 0.75
given the control, or a partial |r| of 0.5), **and** its partial effect is visible (at least
:data:`~lstm_interp.analysis.visible_effect.MIN_EFFECT`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lstm_interp.analysis._scores import score_columns
from lstm_interp.analysis.visible_effect import MIN_EFFECT, visible_effect
from lstm_interp.features import Feature, compute_feature, get_feature

MIN_PARTIAL = 0.5  # strength: AUC 0.75 or |r| 0.5 given the control


@dataclass(frozen=True)
class ControlScore:
    """One unit against one control of a feature (see the module docstring).

    Args:
        control: the control feature's name, e.g. ``"inside_parens"``.
        score: the unit's score on the control, in the feature's metric.
        partial: the unit's score on the feature given the control, oriented by the unit's sign.
        metric: ``"auc"`` or ``"pearson"``, the feature's.
        partial_effect: binary features: the effect given the control, the displayed means' difference between the
            feature's classes within each class of the control (weighted like the stratified AUC), oriented by the
            unit's sign; NaN for a continuous feature.
        min_effect: the ``partial_effect`` from which the difference is visible.

    Example::

        >>> c = ControlScore("inside_parens", score=0.99, partial=0.52, metric="auc")
        >>> c.beaten_by(0.95)  # a parenthesis unit: better on the control, chance given it
        False
    """

    control: str
    score: float
    partial: float
    metric: str
    partial_effect: float = math.nan
    min_effect: float = MIN_EFFECT

    @property
    def partial_strength(self) -> float:
        """``partial`` on the 0-to-1 scale of both metrics: ``2 * AUC - 1`` or ``|r|``."""
        return 2 * self.partial - 1 if self.metric == "auc" else self.partial

    def beaten_by(self, feature_score: float) -> bool:
        """Whether a unit with ``feature_score`` on the feature is a cell of it rather than of this control."""
        visible = math.isnan(self.partial_effect) or self.partial_effect >= self.min_effect
        return feature_score > self.score and self.partial_strength >= MIN_PARTIAL and visible

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, ``partial_strength`` included."""
        data = {k: v for k, v in asdict(self).items() if k != "min_effect"}
        if math.isnan(self.partial_effect):
            data["partial_effect"] = None
        return data | {"partial_strength": self.partial_strength}


def check_control(feature: np.ndarray, control: np.ndarray, label: str, control_label: str) -> None:
    """Refuse a control that cannot say anything about ``feature`` on this text.

    Raises:
        ValueError: a control that is constant, equal to the feature (or its negation), or that leaves the feature
            constant within each of its two classes.
    """
    if control.min() == control.max():
        raise ValueError(
            f"control {control_label!r} of feature {label!r} is constant ({bool(control[0])}) over all "
            f"{len(control)} characters: a score given it is undefined; pick a text where it varies"
        )
    binary = feature.dtype == np.bool_
    if binary and (np.array_equal(feature, control) or np.array_equal(feature, ~control)):
        raise ValueError(f"control {control_label!r} equals feature {label!r} on this text: it cannot control for it")
    if binary and not any(_both_classes(feature[control == side]) for side in (False, True)):
        raise ValueError(
            f"feature {label!r} is constant within each class of control {control_label!r} on this text: "
            "nothing is left to score given the control"
        )


def control_scores(
    x: Tensor,
    feature: np.ndarray,
    control: np.ndarray,
    metric: str,
    signs: np.ndarray,
    control_label: str,
    name: str,
    quantity: str = "cell",
    min_effect: float = MIN_EFFECT,
) -> list[ControlScore]:
    """A :class:`ControlScore` for every column of ``x`` (T, K).

    Args:
        x: (T, K) the candidate units' values.
        feature: (T,) the feature (bool for ``"auc"``, numbers for ``"pearson"``).
        control: (T,) bool, the control; checked with :func:`check_control` first.
        metric: the feature's metric.
        signs: (K,) each unit's sign on the feature (+1, -1 or 0), which orients ``partial``.
        control_label: the control's name.
        name: what ``x`` is, for error messages.
        quantity: what ``x`` holds, which says how it is displayed (for ``partial_effect``).
        min_effect: the visible ``partial_effect``.
    """
    effect = np.full(x.shape[1], np.nan)
    if metric == "auc":
        raw = score_columns(x, control, "auc", name)
        score = np.maximum(raw, 1 - raw)
        u, shift, pairs = np.zeros(x.shape[1]), np.zeros(x.shape[1]), 0
        for side in (False, True):
            within = torch.from_numpy(control == side)
            part = feature[within.numpy()]
            if not _both_classes(part):
                continue
            n1 = int(part.sum())
            weight = n1 * (len(part) - n1)
            u += score_columns(x[within], part, "auc", name) * weight
            shift += visible_effect(x[within], part, "auc", quantity) * weight
            pairs += weight
        partial = u / pairs
        partial = np.where(signs < 0, 1 - partial, partial)
        effect = shift / pairs * np.where(signs < 0, -1, 1)
    else:
        c = control.astype(np.float64)
        r_xc = score_columns(x, c, "pearson", name)
        r_xf = score_columns(x, feature, "pearson", name)
        r_fc = float(np.corrcoef(feature, c)[0, 1])
        score = np.abs(r_xc)
        with np.errstate(invalid="ignore", divide="ignore"):
            partial = (r_xf - r_xc * r_fc) / np.sqrt((1 - r_xc**2) * (1 - r_fc**2))
        partial = np.nan_to_num(partial) * np.where(signs < 0, -1, 1)
    return [
        ControlScore(control_label, float(s), float(p), metric, float(e), min_effect)
        for s, p, e in zip(score, partial, effect, strict=True)
    ]


def usable_controls(
    feature: Feature, values: np.ndarray, texts: str | Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The feature's registered controls that can be scored on ``texts``, and why each other one cannot.

    Each control is computed on each text and joined end to end, as ``feature_values`` joins the feature's
    ``values``. A control is left out when it is unregistered, not binary, constant on the texts ("constant on this
    text"), or refused by :func:`check_control`; a typed text or a probe often lacks one (no line of dialogue), and
    the matches are then scored without it. The one place the monitor, the explorer, ``run_analysis`` and
    ``find_cells`` (its default, ``controls=None``) decide this.

    Returns:
        ``({control name: bool values}, {control name: why it was left out})``.
    """
    parts = [texts] if isinstance(texts, str) else list(texts)
    usable: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for name in feature.controls:
        try:
            control = get_feature(name)
            if control.kind != "binary":
                raise ValueError(f"control {name!r} is {control.kind}")
            c_values = np.concatenate([compute_feature(control, text) for text in parts]).astype(bool)
            if c_values.min() == c_values.max():
                skipped[name] = "constant on this text"
                continue
            check_control(values, c_values, feature.name, name)
        except (KeyError, ValueError) as err:  # unregistered (UnknownFeatureError), or refused by check_control
            skipped[name] = str(err)
            continue
        usable[name] = c_values
    return usable, skipped


def _both_classes(labels: np.ndarray) -> bool:
    return bool(len(labels)) and bool(labels.any()) and not bool(labels.all())
