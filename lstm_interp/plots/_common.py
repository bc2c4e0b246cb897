"""Helpers shared by the figures: argument checks, the text-on-a-grid layout, value scales and colours.

Private to :mod:`lstm_interp.plots`; every public plot function lives in its own module.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap, Normalize

from lstm_interp.tracing import QUANTITY_KINDS, Trace

# Bundled with matplotlib, so always found, and it has every marker glyph used below (↵ ␣ ⇥ ·).
MONOSPACE = "DejaVu Sans Mono"
# Non-finite values are drawn in this neutral grey, distinct from every colour of the diverging and red maps.
BAD_COLOR = (0.62, 0.62, 0.62, 1.0)
EMPTY_COLOR = (1.0, 1.0, 1.0, 0.0)
DPI = 100
# Matplotlib's Agg canvas refuses images over 2**16 pixels on a side; stay well below it.
MAX_PIXELS = 30_000
MISSING_CHAR = "·"

GATE_COLORS = {
    "input_gate": "tab:blue",
    "forget_gate": "tab:red",
    "output_gate": "tab:green",
    "reset_gate": "tab:purple",
    "update_gate": "tab:orange",
}


@dataclass(frozen=True)
class Scale:
    """How one quantity is coloured: the transform applied first, its range, and the colorbar label."""

    label: str
    vmin: float
    vmax: float
    tanh: bool = False

    @property
    def norm(self) -> Normalize:
        return Normalize(self.vmin, self.vmax, clip=True)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The transformed values, with every non-finite one (even +-inf, which tanh would tame) as NaN."""
        finite = np.isfinite(values)
        return np.where(finite, np.tanh(values) if self.tanh else values, np.nan)


def scale_for(quantity: str) -> Scale:
    """Cells are squashed with tanh as in the paper; sigmoid gates span [0, 1] (0.5 at the colormap's centre)."""
    # The one table, in tracing/quantities.py; an unknown name is reported by layer_values, which lists the known.
    kind = QUANTITY_KINDS.get(quantity, "signed")
    if kind == "unbounded":
        return Scale(f"tanh({quantity})", -1.0, 1.0, tanh=True)
    if kind == "gate":
        return Scale(quantity, 0.0, 1.0)
    return Scale(quantity, -1.0, 1.0)


def step_window(num_steps: int, start: int, length: int | None) -> slice:
    """The steps ``start`` to ``start + length`` (clipped to the trace), after checking both arguments."""
    if not 0 <= start < num_steps:
        raise ValueError(f"`start` must be in [0, {num_steps}) for a trace of {num_steps} steps, got {start!r}")
    if length is not None and length < 1:
        raise ValueError(f"`length` must be >= 1 or None, got {length!r}")
    stop = num_steps if length is None else min(num_steps, start + length)
    return slice(start, stop)


def check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def has_text(trace: Trace) -> bool:
    """Whether the trace knows one character per step (a trace of ids or of a foreign module may not)."""
    return trace.text is not None and len(trace.text) == len(trace.tokens)


def window_chars(trace: Trace, window: slice) -> list[str]:
    """The characters of the steps in ``window``; ``·`` per step when the trace has no text (or not one per step)."""
    if not has_text(trace):
        return [MISSING_CHAR] * (window.stop - window.start)
    return list(trace.text[window])


def step_cells(
    trace: Trace, window: slice, chars_per_line: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, int]:
    """The character cells that draw the steps in ``window``: ``(chars, step, rows, cols, num_rows)``.

    A character trace has one cell per step, laid out by :func:`layout`. A trace whose steps are tokens (words,
    subwords: ``trace.labels``) gets one cell per character of each token's string, so a word is as wide as its
    letters, with a blank cell between tokens; a token never breaks across lines (one longer than a line is cut with
    ``…``), and a ``"\n"`` token starts a new line. ``step[i]`` is the step cell ``i`` belongs to, -1 for a blank.
    """
    if not getattr(trace, "has_token_labels", False):
        chars = window_chars(trace, window)
        positions, num_rows = layout(chars, chars_per_line)
        steps = np.arange(len(chars))
        return chars, steps, np.array([r for r, _ in positions]), np.array([c for _, c in positions]), num_rows
    labels = trace.labels[window]  # type: ignore[index]
    chars: list[str] = []
    steps: list[int] = []
    rows: list[int] = []
    cols: list[int] = []
    row = col = 0
    for k, label in enumerate(labels):
        text = label if label else MISSING_CHAR
        if len(text) > chars_per_line:
            text = text[: chars_per_line - 1] + "…"
        if col and col + 1 + len(text) > chars_per_line:
            row, col = row + 1, 0
        elif col:
            chars.append(" ")
            steps.append(-1)
            rows.append(row)
            cols.append(col)
            col += 1
        for char in text:
            chars.append(char)
            steps.append(k)
            rows.append(row)
            cols.append(col)
            col += 1
        if label == "\n":
            row, col = row + 1, 0
    return chars, np.array(steps), np.array(rows), np.array(cols), (row + 1 if col or not rows else row)


def visible(char: str, *, space: str = " ") -> str:
    """A drawable stand-in for whitespace and control characters."""
    if char == "\n":
        return "↵"
    if char == "\t":
        return "⇥"
    if char == " ":
        return space
    if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
        return MISSING_CHAR
    return char


def layout(chars: Sequence[str], chars_per_line: int) -> tuple[list[tuple[int, int]], int]:
    """Place characters on a grid: (row, column) per character, and the number of rows.

    A newline occupies its own cell (drawn as ``↵``) and the next character starts a new row; a line longer than
    ``chars_per_line`` wraps.
    """
    positions: list[tuple[int, int]] = []
    row, col = 0, 0
    for char in chars:
        if col >= chars_per_line:
            row, col = row + 1, 0
        positions.append((row, col))
        col = chars_per_line if char == "\n" else col + 1
    return positions, (row + 1 if positions else 0)


def layer_values(trace: Trace, layer: str, quantity: str) -> np.ndarray:
    """``trace[f"{layer}.{quantity}"]`` as a float64 (T, H) array, with errors that list what the trace has.

    Raises:
        ValueError: ``layer`` is not a layer of the trace, or ``quantity`` is not one this kind of cell has.
        KeyError: the name exists for this architecture but the trace did not keep it.
    """
    if layer not in trace.layer_names:
        raise ValueError(f"layer {layer!r} is not in this trace; its layers are {trace.layer_names}")
    if quantity not in trace.quantities:
        raise ValueError(f"{quantity!r} is not a quantity of a {trace.cell!r} layer; they are {trace.quantities}")
    name = f"{layer}.{quantity}"
    if name not in trace:
        raise KeyError(f"{name!r} is not in this trace (a `names_filter` dropped it); it holds {list(trace)}")
    return trace[name].double().numpy()


def diverging_cmap(name: str = "RdBu") -> Colormap:
    """The colormap with non-finite values in :data:`BAD_COLOR` (a copy: registered colormaps stay untouched)."""
    return colormaps[name].with_extremes(bad=BAD_COLOR)


def rgba(values: np.ndarray, cmap: Colormap, norm: Normalize) -> np.ndarray:
    """Colours of ``values`` (any shape) with NaN/inf in :data:`BAD_COLOR`: shape (..., 4)."""
    finite = np.isfinite(values)
    colors = cmap(norm(np.where(finite, values, 0.0)))
    colors[~finite] = BAD_COLOR
    return colors


def ink_for(background: Sequence[float]) -> str:
    """Black text on light backgrounds and white on dark ones (relative luminance of the sRGB colour)."""
    r, g, b = background[:3]
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45 else "black"


def check_height(height_in: float, what: str) -> None:
    if height_in * DPI > MAX_PIXELS:
        raise ValueError(
            f"the {what} would be {math.ceil(height_in * DPI)} pixels tall (at most {MAX_PIXELS}); "
            "plot part of the text with `start` and `length`"
        )
