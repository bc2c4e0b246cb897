"""``feature_values``: a feature's values over one or several texts, checked once for every consumer.

:func:`~lstm_interp.find_cells`, the analysis pass and the activation monitor all score units against a feature;
each needs the same two guarantees first: one value per traced step, and a feature that varies (a constant
feature makes every unit's AUC or correlation undefined). :func:`check_feature_values` is the one place that says
so; :func:`feature_values` computes a feature over texts and checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lstm_interp.features.registry import Feature, compute_feature


class ConstantFeatureError(ValueError):
    """A feature with one value over the whole text: how well any unit tracks it is undefined.

    Callers that scan every registered feature catch it to skip the feature (and say why); callers that were asked
    for this feature let it propagate.
    """


def check_feature_values(
    values: np.ndarray, label: str, num_steps: int, *, over: str = "this trace", hint: str = ""
) -> None:
    """Raise unless ``values`` has ``num_steps`` entries and at least two distinct values.

    Args:
        values: (T,) the feature's values.
        label: the feature's name, quoted in the message.
        num_steps: steps of the trace the values are compared with.
        over: what the values were computed on, for the message ("this trace", "the probe texts", ...).
        hint: appended to the constant-feature message: what the caller can do about it.

    Raises:
        ValueError: a length that differs from ``num_steps``.
        ConstantFeatureError: (a ``ValueError``) a feature with a single value.
    """
    if len(values) != num_steps:
        raise ValueError(f"feature {label!r} has {len(values)} values but the trace has {num_steps} characters")
    if len(values) == 0 or values.min() == values.max():
        constant = values[0].item() if len(values) else "empty"
        raise ConstantFeatureError(
            f"feature {label!r} is constant ({constant!r}) over all {len(values)} characters of {over}: its "
            f"correlation or AUC with any unit is undefined{'; ' + hint if hint else ''}"
        )


def feature_values(
    feature: str | Feature | Callable[[str], Any], texts: str | Sequence[str], *, over: str = "the text", hint: str = ""
) -> np.ndarray:
    """The feature on each text, joined end to end, checked to vary.

    Each text is computed on its own, so a quote opened in one does not run into the next; the result lines up
    with ``Trace.concat`` of the texts' traces.

    Args:
        feature: a registered name, a :class:`~lstm_interp.features.Feature` or a ``text -> array`` callable.
        texts: one text, or several.
        over, hint: worded into the error for a constant feature (see :func:`check_feature_values`).

    Returns:
        (sum of the texts' lengths,) bool for a binary feature, float64 otherwise.

    Raises:
        UnknownFeatureError: an unknown feature name.
        ConstantFeatureError: the feature has one value over all the texts.
        ValueError: the feature's function returned the wrong shape or values (see ``compute_feature``).
    """
    parts = [compute_feature(feature, text) for text in ([texts] if isinstance(texts, str) else texts)]
    values = np.concatenate(parts) if parts else np.zeros(0)
    label = feature.name if isinstance(feature, Feature) else feature if isinstance(feature, str) else "<callable>"
    check_feature_values(values, label, len(values), over=over, hint=hint)
    return values
