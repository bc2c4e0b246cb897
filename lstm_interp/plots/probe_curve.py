"""``plot_probe_curve``: how many units a feature needs: a probe's held-out score against its number of units.

One axes, the number of units on a logarithmic x axis: the probe refitted on its top ``n`` units (``Probe.curve``,
dots joined by a line), the full probe's score (a dashed line), the 95% target and the ``units_needed`` that reach it,
the best single unit (a diamond at ``n = 1``, so that "one unit does it" and "it takes many" read at a glance), the
control task's score (Hewitt & Liang; a dotted line) and chance. The scores are those of
:func:`~lstm_interp.analysis.fit_probe`: held-out ROC AUC for a binary feature, R² for a continuous one.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from lstm_interp.analysis.probe import Probe
from lstm_interp.plots._common import DPI

CURVE_COLOR = "0.15"
SINGLE_COLOR = "tab:purple"  # neither of the signed colours (RdBu's blue and red are +1 and -1)
TARGET_COLOR = "tab:green"
CONTROL_COLOR = "0.5"


def plot_probe_curve(probe: Probe) -> Figure:
    """The probe's held-out score against the number of its top units, with the full probe, the best single unit,
    the 95% target and ``units_needed``, the control task and chance marked.

    Args:
        probe: the output of :func:`~lstm_interp.analysis.fit_probe`.

    Returns:
        A :class:`~matplotlib.figure.Figure` with one axes.

    Raises:
        TypeError: ``probe`` is not a :class:`~lstm_interp.analysis.Probe`.

    Example::

        >>> fig = plot_probe_curve(fit_probe(trace(model, text), "inside_quotes"))  # doctest: +SKIP
    """
    if not isinstance(probe, Probe):
        raise TypeError(f"`probe` must be a Probe, got {type(probe).__name__}")
    fig = Figure(figsize=(8, 5.4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    metric = "ROC AUC" if probe.metric == "auc" else "R²"
    sizes = [n for n, _ in probe.curve]
    scores = [s for _, s in probe.curve]
    right = max([*sizes, 2]) * 1.5
    if sizes:
        ax.plot(sizes, scores, "o-", color=CURVE_COLOR, markersize=4, linewidth=1.2,
                label="probe refitted on its top n units")  # fmt: skip
    ax.axhline(probe.score, color=CURVE_COLOR, linestyle="--", linewidth=1,
               label=f"full probe: {probe.score:.3f} ({len(probe.units)} non-zero units)")  # fmt: skip
    if probe.units_needed is not None:
        ax.axhline(probe.target, color=TARGET_COLOR, linestyle=(0, (1, 2)), linewidth=1)
        ax.axvline(probe.units_needed, color=TARGET_COLOR, linestyle="-", linewidth=1, alpha=0.7,
                   label=f"{probe.units_needed} unit{'s' if probe.units_needed != 1 else ''} reach 95% of the way "
                   f"from chance ({probe.target:.3f})")  # fmt: skip
    layer, unit = probe.best_unit
    ax.plot([1], [probe.best_single], "D", color=SINGLE_COLOR, markersize=8, zorder=3,
            label=f"best single unit, {layer}:{unit}: {probe.best_single:.3f}")  # fmt: skip
    ax.axhline(probe.control_score, color=CONTROL_COLOR, linestyle=":", linewidth=1.5,
               label=f"control task: {probe.control_score:.3f} (selectivity {probe.selectivity:+.3f})")  # fmt: skip
    ax.axhline(probe.chance, color="0.75", linewidth=0.8)
    ax.text(0.85, probe.chance, "chance", ha="left", va="bottom", fontsize=8, color="0.5")
    ax.set_xscale("log")
    ax.set_xlim(0.8, right)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 1, 2, 5, 10: counts of units
    ax.xaxis.set_minor_formatter(NullFormatter())
    values = np.array([*scores, probe.score, probe.best_single, probe.control_score, probe.chance])
    low, high = float(values.min()), float(max(values.max(), probe.chance + 0.05))
    ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_xlabel("units in the probe (its top n by |weight|, refitted)")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title(
        f"{probe.feature}: {probe.quantity} of {', '.join(probe.layers)} ({probe.num_units} units); held-out tail "
        f"of {probe.num_heldout:,} positions",
        fontsize=10,
    )
    # Below the axes: inside, it would hide the control and chance lines or the rising part of the curve.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize=8, frameon=False)
    ax.grid(True, color="0.92")
    ax.set_axisbelow(True)
    return fig
