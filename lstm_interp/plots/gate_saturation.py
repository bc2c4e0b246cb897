"""``plot_gate_saturation``: the paper's gate-saturation scatter (Karpathy, Johnson & Fei-Fei 2015, Fig. 3).

One point per gate unit: x is the fraction of steps it is left-saturated, y the fraction it is right-saturated.
No unit can be both at once, so every point lies in the triangle x + y <= 1; units near (0, 1) are always on
(forget gates there are the "integrators"), units near the origin are never saturated.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lstm_interp.analysis import GateSaturation
from lstm_interp.plots._common import DPI, GATE_COLORS

PANEL_SIZE = 3.6  # inches per layer panel
MAX_COLUMNS = 3
MIN_WIDTH = 5.0


def plot_gate_saturation(saturation: GateSaturation, *, point_size: float = 16.0) -> Figure:
    """Scatter each layer's gate units by how often they are left- (x) and right-saturated (y).

    One subplot per layer (up to three per row), gates coloured consistently (input blue, forget red, output
    green; GRU reset purple, update orange). The line x + y = 1 bounds the possible region and the impossible
    half is shaded. Units with no finite step cannot be placed and are left out; the figure title says how many
    non-finite activations the analysis excluded.

    Args:
        saturation: the result of :func:`~lstm_interp.analysis.gate_saturation`.
        point_size: marker area in points².

    Returns:
        A :class:`~matplotlib.figure.Figure` with one axes per layer.

    Raises:
        ValueError: ``saturation`` holds no gates.

    Example::

        >>> fig = plot_gate_saturation(gate_saturation(trace(model, text)))  # doctest: +SKIP
    """
    layers = saturation.layers
    if not layers:
        raise ValueError("`saturation` holds no gates to plot")
    columns = min(len(layers), MAX_COLUMNS)
    rows = math.ceil(len(layers) / columns)
    # Each row also holds a title and axis labels (about 0.4 inch) besides its square panel; a lone panel is
    # widened so the legend of three gates fits below it.
    width = max(MIN_WIDTH, PANEL_SIZE * columns)
    fig = Figure(figsize=(width, (PANEL_SIZE + 0.4) * rows + 0.7), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(layers) :]:
        fig.delaxes(ax)
    gates = saturation.gates
    for index, (ax, layer) in enumerate(zip(axes.flat, layers, strict=False)):
        ax.fill([0, 1, 1, 0], [1, 0, 1, 1], color="0.93", zorder=0, linewidth=0)
        ax.plot([0, 1], [1, 0], color="0.55", linewidth=1, linestyle="--", zorder=1)
        unplaced = 0
        for gate in gates:
            if (layer, gate) not in saturation.left:
                continue
            left, right = saturation.left[layer, gate], saturation.right[layer, gate]
            placed = np.isfinite(left) & np.isfinite(right)
            unplaced += int((~placed).sum())
            ax.scatter(
                left[placed],
                right[placed],
                s=point_size,
                color=GATE_COLORS.get(gate, "0.3"),
                alpha=0.65,
                edgecolors="none",
                zorder=2,
            )
        title = layer if not unplaced else f"{layer} ({unplaced} units without finite steps)"
        ax.set_title(title, fontsize=10)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_box_aspect(1)  # square panels; unlike set_aspect, constrained layout then keeps titles apart
        ax.grid(True, color="0.9", linewidth=0.6, zorder=0)
        ax.tick_params(labelsize=8)
        # Axis labels only on the outer panels: the lowest one of each column and the first of each row.
        if index + columns >= len(layers):
            ax.set_xlabel(f"fraction left-saturated (< {saturation.low:g})", fontsize=9)
        if index % columns == 0:
            ax.set_ylabel(f"fraction right-saturated (> {saturation.high:g})", fontsize=9)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=GATE_COLORS.get(gate, "0.3"), label=gate.replace("_", " "))
        for gate in gates
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=9)
    title = f"Gate saturation over {saturation.num_steps} steps"
    if saturation.nonfinite:
        title += f" ({saturation.nonfinite} non-finite values excluded)"
    fig.suptitle(title, fontsize=11)
    return fig
