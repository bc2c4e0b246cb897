"""``plot_unit_contexts``: the lecture's slide of "hard to tell" cells, drawn from unit atlas cards.

Each unit gets a panel: a heading with what is known of it (its best feature and how weakly it explains it, the
change in loss when it is zeroed and the characters that change hurts most, and for a last-layer unit the characters
its hidden state raises through the readout), then its highest and its lowest contexts in the corpus, one passage
per row, every character on the colour of the unit's displayed value there (the project's scale: −1 red, 0 white,
+1 blue) with the peak outlined. The values come from the card's ``codes`` (one 8-bit code per character,
:func:`~lstm_interp.tracing.quantities.display_codes`), so the picture shows what the atlas page shows.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lstm_interp.plots._common import (
    DPI,
    EMPTY_COLOR,
    MONOSPACE,
    check_height,
    check_positive,
    diverging_cmap,
    ink_for,
    rgba,
    visible,
)

__all__ = ["plot_unit_contexts"]

CELL_WIDTH, CELL_HEIGHT = 0.105, 0.22  # inches per character
LABEL_WIDTH, MARGIN = 0.75, 0.2
HEADING_HEIGHT, COLORBAR_HEIGHT = 0.62, 0.95
FONT_SIZE = 8


def plot_unit_contexts(cards: Sequence[Mapping[str, Any]], *, n: int = 3) -> Figure:
    """The ``n`` highest and ``n`` lowest contexts of each unit, one panel per card.

    Args:
        cards: unit atlas cards (:meth:`~lstm_interp.analysis.UnitAtlas.card`), each with ``top`` and ``bottom``
            contexts; ``features``, ``ablation`` and ``readout`` go into the heading when present.
        n: contexts of each end per unit (fewer where the card found fewer).

    Returns:
        The figure (``save_figure`` writes it).

    Raises:
        ValueError: no cards, ``n`` below 1, or a card without contexts.

    Example::

        >>> atlas = UnitAtlas.build(model, text, layers=["layers.1"])  # doctest: +SKIP
        >>> fig = plot_unit_contexts([atlas.card("layers.1", 17), atlas.card("layers.1", 301)])  # doctest: +SKIP
    """
    check_positive("n", n)
    if isinstance(cards, Mapping) or not cards:
        raise ValueError(f"`cards` must be a non-empty list of unit atlas cards, got {cards!r:.80}")
    panels = []
    for card in cards:
        rows = [("high", c) for c in card.get("top", [])[:n]] + [("low", c) for c in card.get("bottom", [])[:n]]
        if not rows:
            raise ValueError(f"the card of {card.get('layer')}:{card.get('unit')} has no contexts to draw")
        panels.append((card, rows))
    columns = max(len(context["text"]) for _, rows in panels for _, context in rows)
    num_rows = sum(len(rows) for _, rows in panels)
    width = 2 * MARGIN + LABEL_WIDTH + columns * CELL_WIDTH
    height = len(panels) * HEADING_HEIGHT + num_rows * CELL_HEIGHT + COLORBAR_HEIGHT
    check_height(height, f"figure of {len(panels)} units")
    fig = Figure(figsize=(width, height), dpi=DPI)
    cmap, norm = diverging_cmap(), Normalize(-1.0, 1.0, clip=True)
    left = (MARGIN + LABEL_WIDTH) / width
    top = height
    for card, rows in panels:
        top -= HEADING_HEIGHT
        box_height = len(rows) * CELL_HEIGHT
        ax = fig.add_axes((left, (top - box_height) / height, columns * CELL_WIDTH / width, box_height / height))
        _draw_panel(ax, rows, columns, cmap, norm)
        ax.set_title(_heading(card), loc="left", fontsize=FONT_SIZE, pad=4, linespacing=1.3)
        top -= box_height
    cax = fig.add_axes((left, 0.55 / height, min(3.0, columns * CELL_WIDTH) / width, 0.14 / height))
    bar = fig.colorbar(ScalarMappable(norm, cmap), cax=cax, orientation="horizontal")
    bar.set_label("the unit's displayed value (tanh(c) for a cell state); the peak is outlined", fontsize=FONT_SIZE - 1)
    bar.ax.tick_params(labelsize=FONT_SIZE - 2)
    return fig


def _draw_panel(ax: Any, rows: list[tuple[str, Mapping[str, Any]]], columns: int, cmap: Any, norm: Normalize) -> None:
    grid = np.zeros((len(rows), columns, 4))
    grid[:] = EMPTY_COLOR
    style = {"ha": "center", "va": "center_baseline", "fontsize": FONT_SIZE, "fontfamily": MONOSPACE}
    labels = []
    for r, (end, context) in enumerate(rows):
        codes = np.frombuffer(base64.b64decode(context["codes"]), dtype=np.uint8)
        values = codes.astype(np.float64) / 127.5 - 1.0
        colors = rgba(values, cmap, norm)
        grid[r, : len(values)] = colors
        for col, char in enumerate(context["text"]):
            glyph = visible(char)
            if glyph != " ":
                ax.text(col + 0.5, r + 0.5, glyph, color=ink_for(colors[col]), **style)
        ax.add_patch(Rectangle((context["peak"], r), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        labels.append(f"{end} {context['shown']:+.2f}")
    ax.imshow(grid, extent=(0, columns, len(rows), 0), interpolation="nearest", aspect="auto")
    ax.set_xlim(0, columns)
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([])
    ax.set_yticks([r + 0.5 for r in range(len(rows))], labels, fontsize=FONT_SIZE - 1, color="0.35")
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _heading(card: Mapping[str, Any]) -> str:
    """Two lines: the unit and its best (unexplaining) feature; then its output effects."""
    first = f"{card['layer']} unit {card['unit']}"
    features = card.get("features") or []
    if features:
        best = features[0]
        verdict = "" if card.get("explained") else ", which does not explain it"
        score = f"{best['metric']} {best['score']:.2f}, effect {best['effect']:+.2f}"
        first += f": best feature {best['feature']} ({score}){verdict}"
    effects = []
    ablation = card.get("ablation")
    if ablation:
        hurt = ", ".join(repr(visible(h["char"], space="␣")) for h in ablation["hurt"][:3])
        effects.append(f"zeroed: loss {ablation['delta_loss']:+.4f} nats/char" + (f", most on {hurt}" if hurt else ""))
    readout = card.get("readout")
    if readout:
        raised = " ".join(visible(r["char"], space="␣") for r in readout["raised"][:4])
        lowered = " ".join(visible(r["char"], space="␣") for r in readout["lowered"][:4])
        effects.append(f"when blue it raises {raised} and lowers {lowered}")
    return first + ("\n" + "; ".join(effects) if effects else "")
