"""``plot_error_breakdown``: the share of the LSTM's errors each oracle removes (Karpathy et al. 2015, Fig. 7).

The paper draws a pie; horizontal bars in the order the oracles were applied read more exactly and keep small
categories legible.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lstm_interp.comparison import ErrorBreakdown
from lstm_interp.plots._common import DPI


def plot_error_breakdown(result: ErrorBreakdown) -> Figure:
    """One bar per category, its length the fraction of all errors, labelled with the count.

    Args:
        result: the output of :func:`~lstm_interp.comparison.error_breakdown`.

    Returns:
        A :class:`~matplotlib.figure.Figure` with one axes.

    Raises:
        ValueError: the model made no error on the text (nothing to break down).

    Example::

        >>> fig = plot_error_breakdown(error_breakdown(text, lp, ngrams=oracles, train_text=train))  # doctest: +SKIP
    """
    if not result.num_errors:
        raise ValueError(
            f"no errors to break down: every one of the {result.num_chars} characters has P >= {result.threshold:g}"
        )
    categories = result.categories
    fractions = [c.fraction for c in categories]
    y = np.arange(len(categories))
    fig = Figure(figsize=(7.0, 0.42 * len(categories) + 1.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(categories))]
    ax.barh(y, fractions, color=colors)
    for yi, category in zip(y, categories, strict=True):
        ax.text(category.fraction + 0.01, yi, f"{category.count:,} ({category.fraction:.1%})", va="center", fontsize=8)
    ax.set_yticks(y, [c.name for c in categories], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, min(1.0, max(fractions) + 0.25))
    ax.set_xlabel("fraction of errors (each removed by the first oracle, top to bottom, that explains it)")
    ax.grid(True, axis="x", color="0.9")
    ax.set_axisbelow(True)
    ax.set_title(
        f"{result.num_errors:,} errors (P < {result.threshold:g}) in {result.num_chars:,} characters "
        f"({result.error_rate:.1%})",
        fontsize=10,
    )
    return fig
