"""``plot_cell_heatmap``: one layer's units (rows) against the characters (columns), as one image.

Where :func:`~lstm_interp.plots.plot_cell_text` reads a few units closely, the heatmap scans a whole layer: units
that switch at quotes or newlines show up as vertical stripes at those columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from lstm_interp.plots._common import (
    DPI,
    MONOSPACE,
    diverging_cmap,
    has_text,
    layer_values,
    scale_for,
    step_window,
    visible,
    window_chars,
)
from lstm_interp.tracing import Trace

MAX_CHAR_TICKS = 150  # up to this many steps each column is labelled with its character
MAX_UNIT_TICKS = 40
STEP_WIDTH = 0.12  # inches per step, and per unit row, before the figure is clamped to a legible size
UNIT_HEIGHT = 0.14
WIDTH_RANGE = (5.0, 16.0)
HEIGHT_RANGE = (2.6, 10.0)


def plot_cell_heatmap(
    trace: Trace,
    layer: str,
    *,
    quantity: str = "cell",
    units: Sequence[int] | None = None,
    start: int = 0,
    length: int | None = None,
    cmap: str = "RdBu",
) -> Figure:
    """Draw ``units`` × characters of one layer's ``quantity`` on a diverging colormap.

    Scales as in :func:`~lstm_interp.plots.plot_cell_text`: ``cell`` is shown as ``tanh(c)`` on [-1, +1] (red
    negative, blue positive); sigmoid gates on [0, 1] with 0.5 at the white centre. With at most 150 steps every
    column is labelled with its character (``␣`` for a space, ``↵`` for a newline), otherwise (or when the
    trace has no text) with step numbers. Non-finite values are drawn grey.

    Args:
        trace: a trace holding ``f"{layer}.{quantity}"``.
        layer: the layer name, one of ``trace.layer_names``.
        quantity: the per-layer quantity to show.
        units: which unit indices to show, top to bottom (``None``: all of them).
        start: the first step to draw.
        length: how many steps to draw (``None``: to the end).
        cmap: a diverging matplotlib colormap name.

    Returns:
        A :class:`~matplotlib.figure.Figure` with the image axes and a colorbar axes.

    Raises:
        ValueError: a layer the trace lacks, an unknown ``quantity``, empty ``units`` or a unit out of range, or a
            bad ``start``/``length``.
        KeyError: the trace was filtered and lacks ``f"{layer}.{quantity}"``.

    Example::

        >>> fig = plot_cell_heatmap(tr, "layers.1", units=range(32), length=120)  # doctest: +SKIP
    """
    values = layer_values(trace, layer, quantity)
    num_units = values.shape[1]
    if units is None:
        units = list(range(num_units))
    units = [int(u) for u in units]
    if not units:
        raise ValueError(f"`units` is empty; pass unit indices of {layer!r} (0 to {num_units - 1}) or None for all")
    out_of_range = [u for u in units if not 0 <= u < num_units]
    if out_of_range:
        raise ValueError(f"units {out_of_range} are out of range for {layer!r}, which has {num_units} units")
    window = step_window(len(trace.tokens), start, length)
    scale = scale_for(quantity)
    image = scale.apply(values[window][:, units].T)  # (units, steps)
    steps = image.shape[1]

    width = float(np.clip(1.8 + steps * STEP_WIDTH, *WIDTH_RANGE))
    height = float(np.clip(1.5 + len(units) * UNIT_HEIGHT, *HEIGHT_RANGE))
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    # Masking keeps NaN/inf out of the colour scale; the colormap's "bad" colour paints them grey.
    masked = np.ma.masked_invalid(image)
    extent = (window.start - 0.5, window.stop - 0.5, len(units) - 0.5, -0.5)
    mappable = ax.imshow(
        masked, cmap=diverging_cmap(cmap), norm=scale.norm, aspect="auto", interpolation="nearest", extent=extent
    )
    bar = fig.colorbar(mappable, ax=ax, fraction=0.04, pad=0.01)
    bar.set_label(scale.label)

    if steps <= MAX_CHAR_TICKS and has_text(trace):
        chars = window_chars(trace, window)
        # Shrink the labels as columns get narrow: 9 pt fits the 0.12-inch columns of a long window.
        size = 9 if steps > 60 else 10
        ax.set_xticks(range(window.start, window.stop), [visible(c, space="␣") for c in chars])
        ax.tick_params(axis="x", length=0, labelsize=size)
        for label in ax.get_xticklabels():
            label.set_fontfamily(MONOSPACE)
        ax.set_xlabel(f"characters {window.start}–{window.stop - 1}")
    else:
        ax.set_xlabel("step")
    rows = np.linspace(0, len(units) - 1, min(len(units), MAX_UNIT_TICKS)).round().astype(int)
    ax.set_yticks(rows, [str(units[r]) for r in rows], fontsize=8 if len(rows) > 20 else 10)
    ax.set_ylabel("unit")
    title = f"{layer} {scale.label}"
    bad = int(np.sum(~np.isfinite(image)))
    if bad:
        title += f"  [{bad} non-finite value{'s' * (bad != 1)} in grey]"
    ax.set_title(title, loc="left")
    return fig
