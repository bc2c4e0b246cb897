"""``probe_ablation``: does the network *use* the units a probe relies on? Ablate them together, against random sets.

A probe (:func:`~lstm_interp.analysis.fit_probe`) shows that a feature can be read from a handful of units; like a
correlation, that does not show the model uses them. Dalvi et al. (2019) ablate a probe's top neurons and compare
with random neurons. Here the probe's top ``k`` units are ablated together while the model reads a text, and the
change in loss at the target positions is compared with that of ``n_random_sets`` random sets of ``k`` units of the
same layers, each top unit also alone against random single units: one run of
:func:`~lstm_interp.experiments.ablation_study.ablation_study` (its bootstrap, percentiles and figure), with the
probe's units as ``together_units``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lstm_interp.analysis.probe import Probe
from lstm_interp.experiments.ablation_study import AblationStudy, ablation_study
from lstm_interp.features import FEATURES
from lstm_interp.models.char_lstm import CharLSTM


def probe_ablation(
    model: CharLSTM,
    text: str,
    probe: Probe,
    *,
    k: int = 5,
    targets: str | Sequence[bool] | np.ndarray | None = None,
    n_random_sets: int = 100,
    n_random: int = 100,
    value: str = "zero",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> AblationStudy:
    """Ablate the probe's top ``k`` units together (and each alone) against random units of the same layers.

    Args:
        model: the network the probe's trace came from.
        text: the text the loss is measured on (every character in the vocabulary); the probe's own text or
            another one.
        probe: a fitted :class:`~lstm_interp.analysis.Probe` with at least one non-zero unit.
        k: how many of its top units (fewer when it has fewer non-zero units).
        targets: the positions where the loss is measured, as for :func:`ablation_study`; default
            ``"feature:<the probe's feature>"`` (where it is non-zero), which needs a registered feature.
        n_random_sets: random sets of the same size, drawn from the same layers, to compare the top units with.
        n_random: random single units to compare each top unit with.
        value: ``"zero"`` or ``"mean"`` (see :func:`ablation_study`).
        seed: for the random units and sets and the bootstrap.
        log: called with progress lines.

    Returns:
        An :class:`~lstm_interp.experiments.ablation_study.AblationStudy` whose ``together`` is the top units'
        effect and ``random_set_target_deltas`` the random sets'.

    Raises:
        TypeError: ``probe`` is not a :class:`~lstm_interp.analysis.Probe`.
        ValueError: a probe without non-zero units, a bad ``k``, no ``targets`` for an unregistered feature; and
            everything :func:`ablation_study` refuses, before any ablation runs.

    Example::

        >>> probe = fit_probe(trace(novel, chapter), "inside_quotes")  # doctest: +SKIP
        >>> study = probe_ablation(novel, chapter, probe, k=5)  # doctest: +SKIP
        >>> study.together.percentile  # doctest: +SKIP
        100.0
    """
    if not isinstance(probe, Probe):
        raise TypeError(f"`probe` must be a Probe from fit_probe, got {type(probe).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive integer, got {k!r}")
    top = probe.top_units(k)
    if not top:
        raise ValueError(f"the probe of {probe.feature!r} has no unit with a non-zero weight: nothing to ablate")
    registered = probe.feature in FEATURES
    if targets is None and not registered:
        raise ValueError(f"the probe's feature {probe.feature!r} is not registered: pass `targets` explicitly")
    return ablation_study(
        model,
        text,
        top,
        f"feature:{probe.feature}" if targets is None else targets,
        quantity=probe.quantity,
        value=value,
        n_random=n_random,
        together_feature=probe.feature if registered else None,
        together_units=top,
        together_label=f"the probe's top {len(top)} for {probe.feature}",
        n_random_sets=n_random_sets,
        seed=seed,
        log=log,
    )
