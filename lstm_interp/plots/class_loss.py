"""``plot_class_loss``: the LSTM's and the n-gram's mean loss per character class, side by side.

After Karpathy, Johnson & Fei-Fei (2015), Fig. 4 (middle, right), which compares the two models character by
character; here characters are grouped into the classes of :func:`~lstm_interp.comparison.char_class`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lstm_interp.comparison import ClassLoss
from lstm_interp.plots._common import DPI

LSTM_COLOR = "tab:red"  # the paper's colours: LSTM red, n-gram blue
NGRAM_COLOR = "tab:blue"


def plot_class_loss(result: ClassLoss) -> Figure:
    """Grouped horizontal bars: per character class present in the text, both models' mean loss in nats.

    Each class is labelled with its number of characters and the difference (LSTM minus n-gram; negative where
    the LSTM is better). Classes absent from the text are left out; the overall means are drawn as a last group.

    Args:
        result: the output of :func:`~lstm_interp.comparison.class_loss`.

    Returns:
        A :class:`~matplotlib.figure.Figure` with one axes.

    Raises:
        ValueError: no class has a character (cannot happen for a result of :func:`class_loss`).

    Example::

        >>> fig = plot_class_loss(class_loss(text, lstm_lp, ngram_lp, ngram_order=9))  # doctest: +SKIP
    """
    rows = [row for row in result.rows if row.count]
    if not rows:
        raise ValueError("`result` has no character in any class; nothing to plot")
    labels = [f"{row.name}  (n={row.count:,}, {row.difference:+.2f})" for row in rows]
    labels.append(f"all  (n={result.num_chars:,}, {result.lstm_loss - result.ngram_loss:+.2f})")
    lstm = [row.lstm_loss for row in rows] + [result.lstm_loss]
    ngram = [row.ngram_loss for row in rows] + [result.ngram_loss]
    y = np.arange(len(labels))
    fig = Figure(figsize=(7.5, 0.45 * len(labels) + 1.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    height = 0.38
    name = f"{result.ngram_order}-gram" if result.ngram_order else "n-gram"
    ax.barh(y - height / 2, lstm, height, color=LSTM_COLOR, label="LSTM")
    ax.barh(y + height / 2, ngram, height, color=NGRAM_COLOR, label=name)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.axhline(len(labels) - 1.5, color="0.7", linewidth=0.8)  # sets the overall means apart
    ax.set_xlabel("mean loss per character (nats)")
    ax.grid(True, axis="x", color="0.9")
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title(f"Loss by character class: LSTM vs {name} (difference = LSTM − {name})", fontsize=10)
    return fig
