"""``plot_cell_text``: the text itself, each character on a background coloured by one unit (Karpathy et al., Fig. 2).

This is the picture that made the paper famous: a quote-detection cell turns blue inside quotes and red outside;
a line-length cell fades across each line. One panel per unit, all showing the same stretch of text.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from lstm_interp.plots._common import (
    DPI,
    EMPTY_COLOR,
    MONOSPACE,
    check_height,
    check_positive,
    diverging_cmap,
    ink_for,
    layer_values,
    rgba,
    scale_for,
    step_cells,
    step_window,
    visible,
)
from lstm_interp.tracing import Trace

# Sizes in inches at DPI 100: 80 characters per line make a figure about 1000 pixels wide; a 10 pt monospace
# glyph is 8.4 pixels wide, so 12-pixel cells keep words readable as words.
CELL_WIDTH = 0.12
CELL_HEIGHT = 0.23
TITLE_HEIGHT = 0.32
PANEL_GAP = 0.12
MARGIN = 0.25
COLORBAR_HEIGHT = 0.9  # the colorbar, its tick labels and its label, below the panels
MIN_WIDTH = 5.0  # narrow grids (few characters per line) still need room for titles and the colorbar
TRACK_HEIGHT = 0.2  # the feature track: a fraction of a character cell's height, under the glyph
TRACK_COLOR = (0.1, 0.1, 0.1, 1.0)
NOTE_LINE_HEIGHT = 0.18  # one line of the figure's note, in inches at 10 pt (line spacing 1.3)
NOTE_COLOR = "#6b4a00"  # the dark amber of the HTML report's notes


def plot_cell_text(
    trace: Trace,
    units: Sequence[tuple[str, int]],
    *,
    quantity: str = "cell",
    start: int = 0,
    length: int | None = None,
    chars_per_line: int = 80,
    font_size: float = 10.0,
    cmap: str = "RdBu",
    feature: np.ndarray | None = None,
    feature_name: str = "feature",
    note: str | None = None,
    labels: Sequence[str | None] | None = None,
) -> Figure:
    """Draw the traced text once per unit, each character's background coloured by that unit's value there.

    Colours use a diverging map (``RdBu`` by default: red is negative, blue positive, white zero, as in the paper).
    For ``quantity="cell"`` the value is ``tanh(c)`` on [-1, +1]; ``hidden``, ``cell_candidate`` and ``new_gate``
    already lie in [-1, +1]. Sigmoid gates (input, forget, output, reset, update) lie in [0, 1] and use the same
    diverging map stretched over [0, 1], so 0.5 is white and a saturated gate is deep red (0) or deep blue (1).
    Newlines are drawn as ``↵`` and start a new line; lines longer than ``chars_per_line`` wrap. Non-finite values
    are drawn on grey and counted in the panel title. A trace without text shows ``·`` per step.

    Args:
        trace: a trace holding ``f"{layer}.{quantity}"`` for every layer named in ``units``.
        units: the (layer name, unit index) pairs to show, one panel each, top to bottom.
        quantity: the per-layer quantity to colour by.
        start: the first step to draw.
        length: how many steps to draw (``None``: to the end of the trace).
        chars_per_line: where long lines wrap.
        font_size: character size in points.
        cmap: a diverging matplotlib colormap name.
        feature: (T,) a feature's values over the whole trace (``lstm_interp.features``), drawn as a thin dark track
            under each character: full height where a binary feature is on, a bar as high as the value for a
            continuous one (scaled to the window's range), so a reader sees the match next to the colours.
        feature_name: the feature's name, in each panel's title.
        note: a line for the reader above the panels, the figure's title (wrapped to its width): why these units
            and this quantity, e.g. ``"layers.1 cells saturated: sd of c = 90, ...; showing hidden instead"``.
        labels: one label per unit (or ``None``), added to its panel's title: the feature a unit was matched to,
            say, when the panels show the best units of several features under one feature's track.

    Returns:
        A :class:`~matplotlib.figure.Figure` with one axes per unit (titled ``"layers.1 unit 37 (cell)"``) and a
        colorbar axes below them.

    Raises:
        ValueError: empty ``units``, a layer the trace lacks, a unit index out of range, an unknown ``quantity``,
            bad ``start``/``length``/``chars_per_line``, or a figure too tall to render (use ``length``).
        KeyError: the trace was filtered and lacks ``f"{layer}.{quantity}"``.

    Example::

        >>> fig = plot_cell_text(tr, [("layers.1", 37), ("layers.0", 5)], length=800)  # doctest: +SKIP
        >>> save_figure(fig, "quote_cell.png")  # doctest: +SKIP
    """
    units = list(units)
    if not units:
        raise ValueError("`units` is empty; pass (layer name, unit index) pairs such as [('layers.0', 3)]")
    labels = list(labels) if labels is not None else [None] * len(units)
    if len(labels) != len(units):
        raise ValueError(f"`labels` has {len(labels)} entries for {len(units)} units; give one per unit (or None)")
    check_positive("chars_per_line", chars_per_line)
    window = step_window(len(trace.tokens), start, length)
    scale = scale_for(quantity)
    chars, cell_steps, rows, cols, num_rows = step_cells(trace, window, chars_per_line)
    blank = cell_steps < 0  # the gaps between tokens: drawn empty, not as a value
    columns = []
    for layer, unit in units:
        values = layer_values(trace, layer, quantity)
        if not 0 <= unit < values.shape[1]:
            raise ValueError(f"unit {unit!r} is out of range for {layer!r}, which has {values.shape[1]} units")
        columns.append(scale.apply(values[window, unit])[np.maximum(cell_steps, 0)])

    track = _track(feature, len(trace.tokens), window)
    if track is not None:
        track = np.where(blank, 0.0, track[np.maximum(cell_steps, 0)])
    panel_height = TITLE_HEIGHT + num_rows * CELL_HEIGHT
    width = max(MIN_WIDTH, 2 * MARGIN + chars_per_line * CELL_WIDTH)
    # A proportional glyph averages about 0.55 em: wrap the note at what the width holds, with a little to spare.
    note_lines = _wrap(note, int((width - 2 * MARGIN) * 72 / (0.6 * font_size))) if note else []
    note_height = len(note_lines) * NOTE_LINE_HEIGHT * font_size / 10  # it starts in the top margin
    height = MARGIN + note_height + len(units) * (panel_height + PANEL_GAP) + COLORBAR_HEIGHT
    check_height(height, f"figure of {len(units)} panels of {num_rows} lines")

    fig = Figure(figsize=(width, height), dpi=DPI)
    colormap = diverging_cmap(cmap)
    if note_lines:
        fig.suptitle(
            "\n".join(note_lines), x=MARGIN / width, y=1 - MARGIN / 2 / height, ha="left", va="top",
            fontsize=font_size, color=NOTE_COLOR, linespacing=1.3,
        )  # fmt: skip
    top = height - MARGIN - note_height
    for (layer, unit), column, label in zip(units, columns, labels, strict=True):
        top -= TITLE_HEIGHT
        bottom = top - num_rows * CELL_HEIGHT
        ax = fig.add_axes(
            (MARGIN / width, bottom / height, chars_per_line * CELL_WIDTH / width, (top - bottom) / height)
        )
        _draw_panel(ax, chars, rows, cols, column, num_rows, chars_per_line, colormap, scale.norm, font_size, blank)
        title = f"{layer} unit {unit} ({quantity})" + (f" · {label}" if label else "")
        if track is not None:
            # A white strip along the bottom of each character cell, and in it a dark bar as high as the feature:
            # readable on every background colour, and it never hides the glyph.
            base = rows + 1.0
            ax.bar(cols + 0.5, TRACK_HEIGHT, width=1.0, bottom=base - TRACK_HEIGHT, color="white", linewidth=0)
            ax.bar(cols + 0.5, TRACK_HEIGHT * track, width=1.0, bottom=base - TRACK_HEIGHT * track,
                   color=TRACK_COLOR, linewidth=0)  # fmt: skip
            title += f"  ▁ track: {feature_name}"
        bad = int(np.sum(~np.isfinite(column) & ~blank))
        if bad:
            title += f"  [{bad} non-finite value{'s' * (bad != 1)} on grey]"
        ax.set_title(title, loc="left", fontsize=font_size, pad=4)
        top = bottom - PANEL_GAP

    colorbar_width = 4.0
    cax = fig.add_axes((MARGIN / width, 0.5 / height, colorbar_width / width, 0.14 / height))
    bar = fig.colorbar(ScalarMappable(scale.norm, colormap), cax=cax, orientation="horizontal")
    lo, hi = scale.vmin, scale.vmax
    bar.set_label(f"{scale.label}:  {lo:g} red  ·  {(lo + hi) / 2:g} white  ·  {hi:+g} blue", fontsize=font_size - 1)
    bar.ax.tick_params(labelsize=font_size - 2)
    return fig


def _wrap(note: str, width: int) -> list[str]:
    """The note's lines: whole clauses (ended by ``;`` or ``.``) packed while they fit, so that a number stays next
    to what it measures ("sd of c = 90"), and a clause longer than a line wrapped on its own."""
    lines: list[str] = []
    for clause in re.split(r"(?<=[;.]) +", note.strip()):
        if lines and len(lines[-1]) + 1 + len(clause) <= width:
            lines[-1] += " " + clause
        else:
            # A number is glued to the word before it ("AUC 0.87", "= 90", "unit 5"): textwrap never breaks at a
            # no-break space, which goes back to a plain one once the lines are made.
            glued = re.sub(r" (?=[-+]?\d)", "\u00a0", clause)
            lines += [line.replace("\u00a0", " ") for line in textwrap.wrap(glued, width=width)] or [""]
    return lines


def _track(feature: np.ndarray | None, num_steps: int, window: slice) -> np.ndarray | None:
    """The feature over the window on a 0..1 scale (binary as 0/1, continuous min-max scaled), or ``None``."""
    if feature is None:
        return None
    values = np.asarray(feature.detach().cpu() if hasattr(feature, "detach") else feature)
    if values.shape != (num_steps,):
        raise ValueError(f"`feature` must have one value per step of the trace ({num_steps}), got {values.shape}")
    shown = values[window].astype(np.float64)
    if values.dtype != np.bool_:
        lo, hi = np.nanmin(shown), np.nanmax(shown)
        shown = (shown - lo) / (hi - lo) if hi > lo else np.zeros_like(shown)
    return np.nan_to_num(shown)


def _draw_panel(
    ax: Axes,
    chars: list[str],
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    num_rows: int,
    chars_per_line: int,
    colormap: Colormap,
    norm: Normalize,
    font_size: float,
    blank: np.ndarray,
) -> None:
    """Backgrounds as one image (fast even for thousands of characters), then one text artist per visible glyph."""
    grid = np.zeros((num_rows, chars_per_line, 4))
    grid[:] = EMPTY_COLOR
    colors = rgba(values, colormap, norm)
    colors[blank] = EMPTY_COLOR
    grid[rows, cols] = colors
    ax.imshow(grid, extent=(0, chars_per_line, num_rows, 0), interpolation="nearest", aspect="auto")
    ax.set_xlim(0, chars_per_line)
    ax.set_ylim(num_rows, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.85")
    for char, row, col, color in zip(chars, rows, cols, colors, strict=True):
        glyph = visible(char)
        if glyph == " ":
            continue  # the coloured background already shows a space
        ax.text(
            col + 0.5,
            row + 0.5,
            glyph,
            ha="center",
            va="center_baseline",
            fontsize=font_size,
            fontfamily=MONOSPACE,
            color=ink_for(color),
            alpha=0.5 if char == "\n" else 1.0,  # the marker is not part of the text: keep it quieter
        )
