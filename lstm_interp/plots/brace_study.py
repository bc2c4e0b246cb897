"""``plot_brace_study``: mean probability of ``}`` against the distance to its ``{`` (Karpathy et al. 2015, Fig. 6).

The paper's figure buckets the closing braces of the Linux kernel test set by distance and shows the LSTM (red)
holding its probability while the 20-gram (blue) falls off once the ``{`` is out of its reach.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lstm_interp.comparison import BraceStudy
from lstm_interp.plots._common import DPI
from lstm_interp.plots.class_loss import LSTM_COLOR, NGRAM_COLOR


def plot_brace_study(study: BraceStudy) -> Figure:
    """Both models' mean probability of the matched ``}`` per distance bin, with the number of braces per bin.

    Empty bins have no point (the lines break there); the grey bars below, on their own axis, count the braces
    of each bin, since a mean over a handful of braces says little.

    Args:
        study: the output of :func:`~lstm_interp.comparison.brace_study`.

    Returns:
        A :class:`~matplotlib.figure.Figure` with two axes: probabilities on top, counts below.

    Example::

        >>> fig = plot_brace_study(brace_study(code, lstm_lp, ngram_lp))  # doctest: +SKIP
    """
    bins = study.bins
    x = np.arange(len(bins))
    fig = Figure(figsize=(max(6.0, 0.55 * len(bins) + 2), 5.2), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    name = f"{study.ngram_order}-gram" if study.ngram_order else "n-gram"
    for values, color, label in (
        ([b.lstm_probability for b in bins], LSTM_COLOR, "LSTM"),
        ([b.ngram_probability for b in bins], NGRAM_COLOR, name),
    ):
        top.plot(x, values, marker="o", color=color, label=label)  # NaN (empty bins) breaks the line
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("mean P('}')")
    top.grid(True, color="0.9")
    top.legend(fontsize=9)
    top.set_title(f"Closing braces: {len(study):,} matched '}}', by distance to the matching '{{'", fontsize=10)
    bottom.bar(x, [b.count for b in bins], color="0.6")
    bottom.set_ylabel("braces", fontsize=9)
    bottom.set_xticks(x, [b.label for b in bins], rotation=45, ha="right", fontsize=8)
    bottom.set_xlabel("distance between '{' and '}' (characters)")
    bottom.grid(True, axis="y", color="0.9")
    return fig
