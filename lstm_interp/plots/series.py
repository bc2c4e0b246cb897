"""``plot_series``: a probe that is not text (float features, a time series), with the units beneath on one time axis.

For a forecaster or any model fed float vectors there are no characters to colour. The figure draws the probe's
input channels as lines over time in the top panel and, beneath it on the same time axis, one strip per chosen unit
coloured by its value on the diverging scale every figure uses (-1 red, +1 blue, with the colour bar), so a reader
sees where a unit switches against what the input did there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from torch import Tensor

from lstm_interp.plots._common import DPI, diverging_cmap, layer_values, scale_for, step_window
from lstm_interp.tracing import Trace

MAX_CHANNELS = 8  # more input channels than this are summarised by the first ones (named in the legend)
WIDTH = 10.0
INPUT_HEIGHT = 2.0
UNIT_HEIGHT = 0.32


def plot_series(
    trace: Trace,
    inputs: np.ndarray | Tensor,
    units: Sequence[tuple[str, int]],
    *,
    quantity: str = "cell",
    start: int = 0,
    length: int | None = None,
    channel_names: Sequence[str] | None = None,
    cmap: str = "RdBu",
) -> Figure:
    """Draw the input channels as lines, and each unit of ``units`` as a coloured strip beneath, against time.

    Args:
        trace: a trace of the probe (one step per row of ``inputs``).
        inputs: (T, C) or (T,) the probe's input values, as the model received them.
        units: the (layer name, unit index) pairs to show, one strip each, top to bottom.
        quantity: the per-layer quantity to colour by (``cell`` is shown as ``tanh(c)``).
        start: the first step to draw.
        length: how many steps to draw (``None``: to the end).
        channel_names: a name per input channel for the legend (default ``x0``, ``x1``, ...).
        cmap: a diverging matplotlib colormap name.

    Raises:
        ValueError: empty ``units``, inputs whose length differs from the trace's, a unit out of range, or bad
            ``start``/``length``.

    Example::

        >>> fig = plot_series(tr, probe[0], [("lstm", 3), ("lstm", 7)], length=400)  # doctest: +SKIP
    """
    units = list(units)
    if not units:
        raise ValueError("`units` is empty; pass (layer name, unit index) pairs such as [('lstm', 3)]")
    x = np.asarray(inputs.detach().cpu().float() if isinstance(inputs, Tensor) else inputs, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or len(x) != trace.num_steps:
        raise ValueError(
            f"`inputs` must be (T, channels) with T = {trace.num_steps} steps of the trace, got shape {x.shape}"
        )
    window = step_window(trace.num_steps, start, length)
    steps = np.arange(window.start, window.stop)
    scale = scale_for(quantity)
    rows = []
    for layer, unit in units:
        values = layer_values(trace, layer, quantity)
        if not 0 <= unit < values.shape[1]:
            raise ValueError(f"unit {unit!r} is out of range for {layer!r}, which has {values.shape[1]} units")
        rows.append(scale.apply(values[window, unit]))

    height = INPUT_HEIGHT + UNIT_HEIGHT * len(units) + 1.7  # title, time axis and the labelled colour bar
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    grid = fig.add_gridspec(2, 1, height_ratios=[INPUT_HEIGHT, UNIT_HEIGHT * len(units)], hspace=0.08,
                            left=0.14, right=0.97, top=1 - 0.35 / height, bottom=1.2 / height)  # fmt: skip
    top = fig.add_subplot(grid[0])
    names = list(channel_names) if channel_names is not None else [f"x{c}" for c in range(x.shape[1])]
    for c in range(min(x.shape[1], MAX_CHANNELS)):
        top.plot(steps, x[window, c], linewidth=1.0, label=names[c] if c < len(names) else f"x{c}")
    more = f" (first {MAX_CHANNELS} of {x.shape[1]})" if x.shape[1] > MAX_CHANNELS else ""
    top.set_title(f"input channels{more}, and below them the units' {quantity} over the same steps", loc="left",
                  fontsize=10)  # fmt: skip
    top.legend(loc="upper right", fontsize=8, ncol=min(4, x.shape[1]), frameon=False)
    top.set_xlim(window.start - 0.5, window.stop - 0.5)
    top.tick_params(labelbottom=False, labelsize=8)
    top.grid(alpha=0.3)

    strips = fig.add_subplot(grid[1], sharex=top)
    colormap = diverging_cmap(cmap)
    strips.imshow(np.array(rows), aspect="auto", cmap=colormap, norm=scale.norm, interpolation="nearest",
                  extent=(window.start - 0.5, window.stop - 0.5, len(units) - 0.5, -0.5))  # fmt: skip
    strips.set_yticks(range(len(units)), [f"{layer} #{unit}" for layer, unit in units], fontsize=8)
    strips.set_xlabel("time step", fontsize=9)
    strips.tick_params(labelsize=8)

    cax = fig.add_axes((0.14, 0.45 / height, 0.3, 0.1 / height))
    bar = fig.colorbar(ScalarMappable(scale.norm, colormap), cax=cax, orientation="horizontal")
    lo, hi = scale.vmin, scale.vmax
    bar.set_label(f"{scale.label}:  {lo:g} red  ·  {(lo + hi) / 2:g} white  ·  {hi:+g} blue", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig
