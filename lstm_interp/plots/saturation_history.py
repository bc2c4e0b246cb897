"""``plot_saturation_history``: how the gates' saturation evolves while the network trains.

Each recording (a :class:`~lstm_interp.analysis.GateSaturation` or its :meth:`~GateSaturation.summary`, as a
callback logs it) contributes one point per layer, gate and side: the mean fraction of steps the layer's units
spend left- or right-saturated. Early in training gates sit near 0.5; the paper's trained LSTMs have many forget
gates right-saturated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from lstm_interp.analysis import GateSaturation
from lstm_interp.plots._common import DPI, GATE_COLORS

PANEL_WIDTH = 4.2
PANEL_HEIGHT = 3.0
MAX_COLUMNS = 3
MIN_WIDTH = 7.5  # the legend (three gates and two line styles) spans about 7 inches
SIDES = {"left_saturated": "--", "right_saturated": "-"}


def plot_saturation_history(
    history: Sequence[tuple[int, GateSaturation | Mapping[str, float]]],
) -> Figure:
    """Plot the mean left- and right-saturated fractions of every gate and layer against the training step.

    One subplot per layer (up to three per row); one colour per gate (as in
    :func:`~lstm_interp.plots.plot_gate_saturation`), dashed for left-saturated and solid for right-saturated.
    Recordings are sorted by step. A NaN value (no finite activation that time) leaves a gap in its line.

    Args:
        history: ``(step, saturation)`` pairs, ``saturation`` being a :class:`GateSaturation` or a summary dict
            with keys like ``"layers.0/forget_gate/right_saturated"`` (other keys are ignored).

    Returns:
        A :class:`~matplotlib.figure.Figure` with one axes per layer.

    Raises:
        ValueError: ``history`` is empty or no recording holds a saturation fraction.
        TypeError: an entry is not a ``(step, saturation)`` pair.

    Example::

        >>> history = [(step, gate_saturation(trace(model, probe))) for step, model in checkpoints]  # doctest: +SKIP
        >>> fig = plot_saturation_history(history)  # doctest: +SKIP
    """
    if not history:
        raise ValueError("`history` is empty; pass (step, GateSaturation or summary dict) pairs")
    records: list[tuple[int, Mapping[str, float]]] = []
    for entry in history:
        if not (isinstance(entry, Sequence) and len(entry) == 2):
            raise TypeError(f"each history entry must be a (step, saturation) pair, got {entry!r:.80}")
        step, saturation = entry
        summary = saturation.summary() if isinstance(saturation, GateSaturation) else saturation
        if not isinstance(summary, Mapping):
            raise TypeError(f"saturation at step {step} must be a GateSaturation or a dict, got {type(summary)}")
        records.append((int(step), summary))
    records.sort(key=lambda record: record[0])

    # layer -> gate -> side -> (steps, values), in order of first appearance.
    series: dict[str, dict[str, dict[str, tuple[list[int], list[float]]]]] = {}
    for step, summary in records:
        for key, value in summary.items():
            parts = key.rsplit("/", 2)
            if len(parts) != 3 or parts[2] not in SIDES:
                continue
            layer, gate, side = parts
            steps, values = series.setdefault(layer, {}).setdefault(gate, {}).setdefault(side, ([], []))
            steps.append(step)
            values.append(float(value))
    if not series:
        keys = sorted({key for _, summary in records for key in summary})
        raise ValueError(f"no recording holds a saturation fraction ('<layer>/<gate>/left_saturated'); keys: {keys}")

    layers = list(series)
    columns = min(len(layers), MAX_COLUMNS)
    rows = math.ceil(len(layers) / columns)
    width = max(MIN_WIDTH, PANEL_WIDTH * columns)
    fig = Figure(figsize=(width, PANEL_HEIGHT * rows + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(layers) :]:
        fig.delaxes(ax)
    gates: list[str] = []
    first, last = records[0][0], records[-1][0]
    for index, (ax, layer) in enumerate(zip(axes.flat, layers, strict=False)):
        for gate, sides in series[layer].items():
            if gate not in gates:
                gates.append(gate)
            for side, (steps, values) in sides.items():
                ax.plot(
                    steps,
                    values,
                    linestyle=SIDES[side],
                    color=GATE_COLORS.get(gate, "0.3"),
                    marker="o",
                    markersize=4 if len(steps) <= 30 else 0,  # markers only while they do not crowd the line
                    linewidth=1.5,
                )
        ax.set_title(layer, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, color="0.9", linewidth=0.6)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        if first == last:  # one recording: a unit-wide range, else the locator falls back to fractions
            ax.set_xlim(first - 1, last + 1)
        if index + columns >= len(layers):
            ax.set_xlabel("training step", fontsize=9)
        if index % columns == 0:
            ax.set_ylabel("mean fraction of steps saturated", fontsize=9)
    handles = [Line2D([], [], color=GATE_COLORS.get(g, "0.3"), label=g.replace("_", " ")) for g in gates]
    handles += [
        Line2D([], [], color="0.3", linestyle=style, label=side.replace("_", " ")) for side, style in SIDES.items()
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=9)
    fig.suptitle("Gate saturation during training", fontsize=11)
    return fig
