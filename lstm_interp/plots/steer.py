"""``plot_steer``: the statistics of generated text with and without an intervention, sample by sample.

One column per statistic of a :class:`~lstm_interp.experiments.SteerResult`. The top panel shows every sample's
value in both arms (points, the two samples of a pair joined by a thin line, since they share a seed) with each arm's
mean as a bar; the bottom panel shows the difference of the means (with minus without) and its 95% bootstrap
confidence interval against zero, blue where the intervention raises the statistic and red where it lowers it (the
paper's colours for +1 and -1).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lstm_interp.experiments.steer import SteerResult, SteerStatistic
from lstm_interp.plots._common import DPI

WITHOUT_COLOR = "0.45"
WITH_COLOR = "tab:purple"  # neither of the signed colours: the arms are not signs
RAISE_COLOR = "#2166ac"  # the blue end of RdBu: +1
LOWER_COLOR = "#b2182b"  # the red end of RdBu: -1
JITTER = 0.08


def plot_steer(result: SteerResult) -> Figure:
    """Per-sample values of both arms and the difference of means with its CI, one column per statistic.

    Args:
        result: the output of :func:`~lstm_interp.experiments.steer`.

    Returns:
        A :class:`~matplotlib.figure.Figure` of two rows of axes (values, difference) and one column per statistic.

    Raises:
        TypeError: ``result`` is not a :class:`~lstm_interp.experiments.SteerResult`.

    Example::

        >>> fig = plot_steer(steer(model, prompt, [Clamp("layers.1.cell", [254], 3.0)]))  # doctest: +SKIP
    """
    if not isinstance(result, SteerResult):
        raise TypeError(f"`result` must be a SteerResult, got {type(result).__name__}")
    columns = len(result.statistics)
    fig = Figure(figsize=(max(3.3 * columns, 6.5), 6.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, columns, squeeze=False, height_ratios=[3, 1.1])
    rng = np.random.default_rng(0)  # the same jitter on every drawing of one result
    for column, statistic in enumerate(result.statistics):
        _draw_values(axes[0, column], statistic, rng)
        _draw_difference(axes[1, column], statistic)
    fig.suptitle(_title(result), fontsize=10)
    return fig


def _draw_values(ax: Axes, statistic: SteerStatistic, rng: np.random.Generator) -> None:
    without = np.asarray(statistic.without_values, dtype=np.float64)
    with_ = np.asarray(statistic.with_values, dtype=np.float64)
    offsets = rng.uniform(-JITTER, JITTER, size=(2, len(without)))
    x_without, x_with = 0 + offsets[0], 1 + offsets[1]
    for a, b, xa, xb in zip(without, with_, x_without, x_with, strict=True):
        if math.isfinite(a) and math.isfinite(b):
            ax.plot([xa, xb], [a, b], color="0.85", linewidth=0.7, zorder=1)
    ax.scatter(x_without, without, s=16, color=WITHOUT_COLOR, alpha=0.8, zorder=2, label="without")
    ax.scatter(x_with, with_, s=16, color=WITH_COLOR, alpha=0.8, zorder=2, label="with")
    for x, mean, color in ((0, statistic.mean_without, WITHOUT_COLOR), (1, statistic.mean_with, WITH_COLOR)):
        if math.isfinite(mean):
            ax.hlines(mean, x - 0.28, x + 0.28, color=color, linewidth=2.5, zorder=3)
            ax.annotate(f"{mean:.3g}", (x + 0.3, mean), va="center", fontsize=8, color=color)
    ax.set_xticks([0, 1], ["without", "with"])
    ax.set_xlim(-0.5, 1.75)
    ax.set_ylabel(statistic.unit)
    ax.set_title(statistic.name.replace("_", " "), fontsize=10)
    ax.grid(True, axis="y", color="0.92")
    ax.set_axisbelow(True)
    missing = len(without) - statistic.n_pairs
    if missing:
        ax.text(0.5, 0.01, f"{missing} pair(s) undefined", transform=ax.transAxes, ha="center", fontsize=7, color="0.4")


def _draw_difference(ax: Axes, statistic: SteerStatistic) -> None:
    ax.axvline(0, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_yticks([])
    ax.set_xlabel(f"with − without ({statistic.unit})", fontsize=8)
    if not math.isfinite(statistic.difference):
        ax.text(0.5, 0.5, "undefined (no pair)", transform=ax.transAxes, ha="center", va="center", fontsize=8)
        return
    color = RAISE_COLOR if statistic.difference > 0 else LOWER_COLOR if statistic.difference < 0 else "0.3"
    low, high = statistic.ci_low, statistic.ci_high
    ax.errorbar(
        [statistic.difference], [0], xerr=[[statistic.difference - low], [high - statistic.difference]],
        fmt="o", color=color, capsize=4, markersize=6,
    )  # fmt: skip
    # Zero stays in view, so that whether the interval excludes it reads at a glance.
    span = max(abs(low), abs(high), 1e-12)
    ax.set_xlim(min(low, 0) - 0.15 * span, max(high, 0) + 0.15 * span)
    ax.set_ylim(-1, 1)
    excludes = "excludes 0" if low > 0 or high < 0 else "includes 0"
    ax.set_title(
        f"Δ = {statistic.difference:+.3g}\n95% CI [{low:+.3g}, {high:+.3g}], {excludes}", fontsize=8, color=color
    )


def _title(result: SteerResult) -> str:
    interventions = "; ".join(result.interventions)
    prompt = result.prompt if len(result.prompt) <= 30 else result.prompt[:29] + "…"
    settings = (
        f"{result.n_samples} sample pairs of {result.length} characters after {prompt!r}, temperature "
        f"{result.temperature:g}{'' if result.top_k is None else f', top-k {result.top_k}'}, paired seeds"
    )
    return "\n".join([*textwrap.wrap(f"Steering: {interventions}", 110), settings])
