"""``plot_topk_predictions``: under each character, the model's k best guesses for the next one (Karpathy's blog).

"The Unreasonable Effectiveness of Recurrent Neural Networks" shows the input text on one row and, below every
character, the top guesses for the character that follows, shaded by probability: one can watch the model grow
certain inside a word and hesitate at its end. The blog's URL-cell figure adds one unit's activation under the text:
with ``unit=`` the rows are the text, the unit (−1 red to +1 blue, the project's scale) and the guesses, best first.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from lstm_interp.plots._common import (
    BAD_COLOR,
    DPI,
    EMPTY_COLOR,
    MONOSPACE,
    check_height,
    check_positive,
    diverging_cmap,
    has_text,
    ink_for,
    layer_values,
    layout,
    rgba,
    scale_for,
    step_window,
    visible,
    window_chars,
)
from lstm_interp.tracing import Trace

CELL_WIDTH = 0.19  # inches at DPI 100: 60 characters per line make a figure about 1200 pixels wide
CELL_HEIGHT = 0.23
MARGIN = 0.3
LABEL_WIDTH = 0.6  # room for the row labels left of each block ("unit 511")
HEADER_HEIGHT = 0.45
COLORBAR_HEIGHT = 0.9  # the colorbar, its tick labels and its label, below the grid
MIN_WIDTH = 8.0  # room for the colorbar and its key beside it, however narrow the grid
TEXT_BACKGROUND = (0.93, 0.93, 0.93, 1.0)  # the text row: a pale grey, unlike any shade of either colour map


def plot_topk_predictions(
    trace: Trace,
    chars: str,
    *,
    k: int = 5,
    start: int = 0,
    length: int | None = None,
    chars_per_line: int = 60,
    font_size: float = 10.0,
    cmap: str = "Greens",
    unit: tuple[str, int] | None = None,
    quantity: str = "cell",
) -> Figure:
    """Draw the text on a pale row and, below each character, the ``k`` most likely next characters.

    Column ``t`` holds character ``t`` of the text and, underneath, the model's top-``k`` guesses for character
    ``t + 1`` (``trace["log_probs"][t]``), best first, each cell shaded by its probability (white = 0, dark green =
    1, on ``cmap``: a single hue unlike the red and blue of activations). The guess that matches the actual next
    character is bold. A space guess is drawn ``␣`` and a newline ``↵``; in the text row a newline is ``↵`` and
    starts a new block. Steps whose log-probabilities hold NaN/+inf get grey cells and no guesses. With ``unit``, a
    row between the text and the guesses shows that unit's value after reading each character, on the scale of
    :func:`plot_cell_text` (tanh of a cell: −1 red, 0 white, +1 blue; a gate 0 red to 1 blue).

    Args:
        trace: a trace that kept ``log_probs``.
        chars: the vocabulary in id order (``model.vocab.chars``), so ``log_probs[:, i]`` is for ``chars[i]``.
        k: guesses per character, at most the vocabulary size.
        start: the first step to draw.
        length: how many steps to draw (``None``: to the end).
        chars_per_line: characters per block before wrapping.
        font_size: character size in points.
        cmap: a sequential matplotlib colormap name for the probabilities.
        unit: ``(layer, unit)`` whose activation is drawn under the text, e.g. ``("layers.1", 171)``.
        quantity: which of the unit's quantities: ``"cell"`` (default), ``"hidden"`` or a gate.

    Returns:
        A :class:`~matplotlib.figure.Figure` with one axes for the grid and one colorbar for the probabilities (and
        one for the activation, with ``unit``).

    Raises:
        ValueError: the trace has no ``log_probs``, ``chars`` does not match their width, a bad ``k``, ``start``,
            ``length`` or ``chars_per_line``, or a ``unit`` that is not a layer and unit of the trace.

    Example::

        >>> fig = plot_topk_predictions(tr, model.vocab.chars, k=5, length=120)  # doctest: +SKIP
        >>> fig = plot_topk_predictions(tr, model.vocab.chars, unit=("layers.1", 171))  # the blog's URL figure
    """
    if "log_probs" not in trace:
        raise ValueError(
            f"the trace has no 'log_probs' (next-character log-probabilities); it holds {list(trace)}. "
            "Trace with a `names_filter` that keeps 'log_probs'."
        )
    log_probs = trace["log_probs"].double().numpy()  # (T, V)
    vocab_size = log_probs.shape[1]
    if len(chars) != vocab_size:
        raise ValueError(f"`chars` has {len(chars)} characters but 'log_probs' has {vocab_size} columns")
    check_positive("k", k)
    if k > vocab_size:
        raise ValueError(f"`k` must be at most the vocabulary size {vocab_size}, got {k}")
    check_positive("chars_per_line", chars_per_line)
    activation = _unit_values(trace, unit, quantity)  # (T,) or None; checked before any drawing
    window = step_window(len(trace.tokens), start, length)
    text = window_chars(trace, window)
    log_probs = log_probs[window]
    # A row with NaN or +inf is not a distribution: show it grey rather than rank garbage.
    broken = np.isnan(log_probs).any(axis=1) | np.isposinf(log_probs).any(axis=1)
    order = np.argsort(-np.where(broken[:, None], 0.0, log_probs), axis=1, kind="stable")[:, :k]  # (T, k)
    probs = np.exp(np.take_along_axis(log_probs, order, axis=1))
    actual_next = _next_ids(trace, window, chars)

    positions, num_lines = layout(text, chars_per_line)
    extra = 0 if activation is None else 1  # the unit's row, between the text and the guesses
    block = k + 2 + extra  # text row, [unit row], k guess rows, one blank row between blocks
    num_rows = num_lines * block - 1
    width = max(MIN_WIDTH, 2 * MARGIN + LABEL_WIDTH + chars_per_line * CELL_WIDTH)
    height = HEADER_HEIGHT + num_rows * CELL_HEIGHT + COLORBAR_HEIGHT * (1 + extra)
    check_height(height, f"figure of {num_lines} blocks of {block} rows")

    colormap = colormaps[cmap]
    norm = Normalize(0.0, 1.0, clip=True)
    grid = np.zeros((num_rows, chars_per_line, 4))
    grid[:] = EMPTY_COLOR
    fig = Figure(figsize=(width, height), dpi=DPI)
    left = MARGIN + LABEL_WIDTH
    bottom = COLORBAR_HEIGHT * (1 + extra)
    grid_box = (left / width, bottom / height, chars_per_line * CELL_WIDTH / width, num_rows * CELL_HEIGHT / height)
    ax = fig.add_axes(grid_box)
    if activation is not None:
        scale = scale_for(quantity)
        unit_colors = rgba(scale.apply(activation[window]), diverging_cmap(), scale.norm)
    text_style = {"ha": "center", "va": "center_baseline", "fontsize": font_size, "fontfamily": MONOSPACE}
    for t, (line, col) in enumerate(positions):
        top = line * block
        grid[top, col] = TEXT_BACKGROUND
        glyph = visible(text[t])
        if glyph != " ":
            ax.text(col + 0.5, top + 0.5, glyph, color="black", alpha=0.5 if text[t] == "\n" else 1.0, **text_style)
        if activation is not None:
            grid[top + 1, col] = unit_colors[t]
        first = top + 1 + extra  # the best guess's row
        if broken[t]:
            grid[first : first + k, col] = BAD_COLOR
            continue
        colors = colormap(norm(probs[t]))
        grid[first : first + k, col] = colors
        for rank in range(k):
            guess = int(order[t, rank])
            ax.text(
                col + 0.5,
                first + rank + 0.5,
                visible(chars[guess], space="␣"),
                color=ink_for(colors[rank]),
                fontweight="bold" if guess == actual_next[t] else "normal",
                **text_style,
            )
    ax.imshow(grid, extent=(0, chars_per_line, num_rows, 0), interpolation="nearest", aspect="auto")
    ax.set_xlim(0, chars_per_line)
    ax.set_ylim(num_rows, 0)
    ax.set_xticks([])
    ticks = [line * block + r + 0.5 for line in range(num_lines) for r in range(k + 1 + extra)]
    unit_label = [] if unit is None else [f"unit {unit[1]}"]
    labels = ["text", *unit_label, *(f"#{r + 1}" for r in range(k))] * num_lines
    ax.set_yticks(ticks, labels, fontsize=font_size - 2, color="0.35")
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    title = f"top-{k} next-character guesses under each character"
    if unit is not None:
        title = f"{unit[0]}.{quantity} unit {unit[1]} after each character, and the {title}"
    ax.set_title(title, loc="left", fontsize=font_size, pad=6)
    # The key sits right of the colorbar, so it needs no width beyond MIN_WIDTH however narrow the grid is.
    key = ["darker = more likely", "bold = the character that came next"]
    bad = int(broken.sum())
    if bad:
        key.append(f"grey = {bad} step{'s' * (bad != 1)} with non-finite log-probabilities")
    fig.text((left + 3.3) / width, 0.3 / height, "\n".join(key), fontsize=font_size - 1, va="bottom", color="0.3")

    cax = fig.add_axes((left / width, 0.5 / height, 3.0 / width, 0.14 / height))
    bar = fig.colorbar(ScalarMappable(norm, colormap), cax=cax, orientation="horizontal")
    bar.set_label("probability", fontsize=font_size - 1)
    bar.ax.tick_params(labelsize=font_size - 2)
    if activation is not None:
        uax = fig.add_axes((left / width, (0.5 + COLORBAR_HEIGHT) / height, 3.0 / width, 0.14 / height))
        ubar = fig.colorbar(ScalarMappable(scale.norm, diverging_cmap()), cax=uax, orientation="horizontal")
        ubar.set_label(f"unit {unit[1]}: {scale.label}", fontsize=font_size - 1)  # type: ignore[index]
        ubar.ax.tick_params(labelsize=font_size - 2)
    return fig


def _unit_values(trace: Trace, unit: tuple[str, int] | None, quantity: str) -> np.ndarray | None:
    """(T,) the chosen unit's values, or None; errors name the layer, the unit and what the trace has."""
    if unit is None:
        return None
    if not (isinstance(unit, tuple) and len(unit) == 2 and isinstance(unit[0], str) and isinstance(unit[1], int)):
        raise ValueError(f"`unit` must be a (layer, unit) pair such as ('layers.1', 3), got {unit!r}")
    values = layer_values(trace, unit[0], quantity)  # (T, H)
    if not 0 <= unit[1] < values.shape[1]:
        raise ValueError(f"`unit` {unit[1]} is out of range for {unit[0]!r}: units are 0 .. {values.shape[1] - 1}")
    return values[:, unit[1]]


def _next_ids(trace: Trace, window: slice, chars: str) -> np.ndarray:
    """Per step, the vocabulary id of the character that follows it (-1 at the end or when unknown)."""
    following = np.full(window.stop - window.start, -1)
    if has_text(trace):
        index = {c: i for i, c in enumerate(chars)}
        for t in range(window.start, min(window.stop, len(trace.text) - 1)):
            following[t - window.start] = index.get(trace.text[t + 1], -1)
    return following
