"""``plot_ablation_study``: the tested units' effect on the loss at the targets, against random units of the layer.

Left: the change in loss at the target positions when one random unit is ablated (grey dots, one per unit), with
each tested unit (and the top-k units together, if measured) above it: its value and 95% bootstrap interval (the
axis turns symmetric-logarithmic when a unit lies far outside the random ones, so both stay readable). Right:
the same change at the targets against the change everywhere else: a unit the model uses *for the targets* sits
high and to the left, away from the cloud of random units near zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from lstm_interp.plots._common import DPI

if TYPE_CHECKING:
    from lstm_interp.experiments.ablation_study import AblationStudy

RANDOM_COLOR = "0.6"
TESTED_COLOR = "tab:blue"  # a positive change: the loss rose where the unit should help
TOGETHER_COLOR = "tab:purple"


def plot_ablation_study(study: AblationStudy) -> Figure:
    """Two panels: random units' Δ loss at the targets (histogram) with the tested units marked; Δ at targets
    against Δ elsewhere.

    Args:
        study: the output of :func:`~lstm_interp.experiments.ablation_study`.

    Returns:
        A :class:`~matplotlib.figure.Figure` with two axes.

    Example::

        >>> fig = plot_ablation_study(ablation_study(model, text, [(1, 254)], '"'))  # doctest: +SKIP
    """
    fig = Figure(figsize=(11, 4.4), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    spread = np.asarray(study.random_target_deltas)
    marked = [(e, TESTED_COLOR, ", ".join(f"{layer}:{unit}" for layer, unit in e.units)) for e in study.units]
    if study.together is not None:
        marked.append((study.together, TOGETHER_COLOR, study.together_label or "together"))
    # Random units as a jittered strip (one dot each), the tested ones above with their intervals.
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(spread))
    left.scatter(spread, jitter, s=10, color=RANDOM_COLOR, label=f"{len(spread)} random units of the layer")
    middle = float(np.median(np.concatenate([spread, [e.target_delta for e, _, _ in marked]])))
    for i, (effect, color, label) in enumerate(marked):
        y = 1.0 + i
        side = "right" if effect.target_delta > middle else "left"  # labels run towards the middle, not off
        ci_lo, ci_hi = effect.target_delta_ci
        left.plot([ci_lo, ci_hi], [y, y], color=color, linewidth=2.5)
        left.plot([effect.target_delta], [y], "o", color=color, markersize=7)
        left.annotate(f"{label}: {effect.target_delta:+.3f} nats, percentile {effect.percentile:.0f}",
                      (effect.target_delta, y), xytext=(0, 7), textcoords="offset points", fontsize=8,
                      color=color, ha=side)  # fmt: skip
    left.set_yticks([0, *range(1, len(marked) + 1)], ["random", *["" for _ in marked]])
    left.set_ylim(-0.6, len(marked) + 0.8)
    values = np.abs(np.concatenate([spread, [e.target_delta for e, _, _ in marked]]))
    typical = float(np.percentile(np.abs(spread), 95)) if len(spread) else 0.0
    if typical > 0 and values.max() > 20 * typical:  # a unit far outside the cloud: keep both readable
        left.set_xscale("symlog", linthresh=typical)
    left.margins(x=0.08)  # room for the outermost markers and their labels
    left.axvline(0, color="0.2", linewidth=0.6)
    left.set_xlabel(f"Δ loss at the targets when ablated (nats/char; {study.num_targets:,} targets)")
    left.legend(loc="lower right", fontsize=8, frameon=False)
    left.set_title(f"Ablating {study.quantity} ({study.value}); targets: {study.targets}", fontsize=10)

    right.scatter(study.random_other_deltas, study.random_target_deltas, s=10, color=RANDOM_COLOR, label="random")
    for effect, color, label in marked:
        right.scatter([effect.other_delta], [effect.target_delta], s=40, color=color, label=label, zorder=3)
    right.axhline(0, color="0.2", linewidth=0.6)
    right.axvline(0, color="0.2", linewidth=0.6)
    right.set_xlabel("Δ loss elsewhere (nats/char)")
    right.set_ylabel("Δ loss at the targets (nats/char)")
    right.legend(fontsize=8, frameon=False, loc="best")
    right.set_title("Targets against elsewhere", fontsize=10)
    for ax in (left, right):
        ax.grid(True, color="0.92")
        ax.set_axisbelow(True)
    return fig
