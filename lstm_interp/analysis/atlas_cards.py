"""``atlas.json``, the file of a :class:`~lstm_interp.analysis.UnitAtlas`: its ``meta`` (what made it, the rules)
and its *cards*, one JSON object per unit, what the unit's page and the live explorer show.

A card (every number as JSON: ``null`` where there is none):

- ``layer``, ``unit``, ``quantity``, ``kind`` (``"gate"``, ``"signed"`` or ``"unbounded"``: how it is displayed);
- ``top``, ``bottom``: its contexts, best first, each ``{"position", "value", "shown", "text", "peak", "codes"}``:
  the peak's step in the corpus, its exact raw value and displayed value, the passage (the characters within
  ``window`` of the peak that lie inside the corpus), the peak's index in it, and base64 of one display code per
  character (:func:`~lstm_interp.tracing.quantities.display_codes`: ``code / 127.5 - 1`` on the -1..+1 scale);
  ``found``: how many of each there are (at most ``k``);
- ``histogram``: steps per bin of the displayed value over -1..+1; ``steps``: the finite steps counted;
  ``saturation``: the share of them at ``|shown| >= 0.9``; ``pinned``: flat near +-1 on the feature sample;
- ``features``: up to five ``CellScore.to_dict()`` rows (plus ``strength``), best first by the ranking rule;
  ``explained``: whether the first one explains the unit;
- ``readout``: for a last-layer unit, ``{"raised", "lowered"}`` characters and their head weights;
- ``ablation``: ``{"delta_loss", "hurt", "helped"}`` when the state is zeroed on the ablation sample;
- ``gates``: ``{"memory_gate", "memory_mean", "write_gate", "write_fraction"}`` (``null`` for a plain RNN).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lstm_interp._io import read_json_file
from lstm_interp.analysis.context_heap import ContextHeap
from lstm_interp.analysis.unit_features import EXPLAINS_STRENGTH, UnitFeatures, explains
from lstm_interp.analysis.unit_stats import WRITE_GATE, UnitStats
from lstm_interp.manifest import model_provenance, verify_manifest
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import MEMORY_GATE, display_values, quantity_kind, state_quantity
from lstm_interp.tracing.most_variable_units import PINNED_LEVEL
from lstm_interp.tracing.quantities import display_codes

__all__ = ["ATLAS_FORMAT", "ATLAS_NAME", "CONTEXTS_NAME", "atlas_meta", "context_rows", "layer_cards",
           "read_atlas_json"]  # fmt: skip

ATLAS_FORMAT, ATLAS_VERSION = "lstm_interp.unit_atlas", 1
ATLAS_NAME, CONTEXTS_NAME = "atlas.json", "contexts.safetensors"
FEATURE_ROWS = 5  # feature rows kept per unit


def layer_cards(
    layer: str,
    top: ContextHeap,
    bottom: ContextHeap,
    stats: UnitStats,
    chars: str,
    *,
    pinned: Tensor | None,
    found: UnitFeatures,
    readout: Sequence[dict[str, Any]] | None,
    ablated: Mapping[tuple[str, int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The card of every unit of one layer, in unit order, from its finished heaps and its statistics."""
    tops, bottoms = context_rows(top, chars, stats.quantity), context_rows(bottom, chars, stats.quantity)
    cards = []
    for unit in range(top.units):
        rows = found.of(layer, unit)
        cards.append({
            "layer": layer, "unit": unit, "quantity": stats.quantity, "kind": quantity_kind(stats.quantity),
            "top": tops[unit], "bottom": bottoms[unit], "found": {"top": len(tops[unit]), "bottom": len(bottoms[unit])},
            "histogram": stats.histogram[unit].tolist(), "steps": int(stats.finite[unit]),
            "saturation": stats.saturation(unit), "pinned": None if pinned is None else bool(pinned[unit]),
            "features": rows, "explained": bool(rows) and explains(rows[0]),
            "readout": None if readout is None else readout[unit], "ablation": ablated.get((layer, unit)),
            "gates": stats.gate_habits(unit),
        })  # fmt: skip
    return cards


def context_rows(heap: ContextHeap, chars: str, quantity: str) -> list[list[dict[str, Any]]]:
    """Per unit, the finished heap's peaks as the card's context objects (module docstring), best first."""
    ids, values = heap.windows()  # (H, k, 2W+1)
    positions = heap.positions()
    codes = display_codes(values.reshape(-1, 1), quantity).reshape(values.shape).numpy()
    shown = display_values(heap.values(), quantity)
    letters = np.array([*chars, ""])[ids.numpy()]  # id -1 (outside the corpus) reads as ""
    inside = (ids >= 0).numpy()
    window = heap.window
    out = []
    for unit in range(heap.units):
        rows = []
        for j in range(int((positions[unit] >= 0).sum())):
            keep = inside[unit, j]
            rows.append({
                "position": int(positions[unit, j]), "value": float(values[unit, j, window]),
                "shown": float(shown[unit, j]), "text": "".join(letters[unit, j]),
                "peak": int(keep[:window].sum()), "codes": base64.b64encode(codes[unit, j][keep].tobytes()).decode(),
            })  # fmt: skip
        out.append(rows)
    return out


def atlas_meta(
    model: CharLSTM,
    layer_names: Sequence[str],
    layers: Sequence[str],
    quantity: str,
    *,
    steps: int,
    k: int,
    window: int,
    bins: int,
    found: UnitFeatures,
    ablation_chars: int,
) -> dict[str, Any]:
    """``atlas.json``'s ``meta``: what made the cards and the rules they follow (the corpus and the phases' seconds
    are added by the builder)."""
    cell = model.config.cell
    write = WRITE_GATE[cell][1] if cell in WRITE_GATE else None
    return {
        "format": ATLAS_FORMAT, "format_version": ATLAS_VERSION, "model": model_provenance(model), "cell": cell,
        "layer_names": list(layer_names), "layers": list(layers), "hidden_size": model.config.hidden_size,
        "quantity": quantity, "kind": quantity_kind(quantity), "steps": steps, "k": k, "window": window,
        "contexts": "local peaks: strictly above the `window` steps before, at least the `window` steps after; "
                    "the k highest (lowest), ties to the earlier step",
        "histogram": {"bins": bins, "low": -1.0, "high": 1.0},
        "saturation": f"share of steps with |displayed value| >= {PINNED_LEVEL}", "pinned_level": PINNED_LEVEL,
        "features": {"chars": found.num_steps, "scored": list(found.scored), "skipped": found.skipped,
                     "rows": FEATURE_ROWS, "explains_strength": EXPLAINS_STRENGTH,
                     "explains": f"first row visible, beating its controls, strength >= {EXPLAINS_STRENGTH}"},
        "ablation": {"chars": ablation_chars, "quantity": state_quantity(cell)} if ablation_chars >= 2 else None,
        "gates": None if write is None else {"memory_gate": MEMORY_GATE[cell], "write": write},
    }  # fmt: skip


def read_atlas_json(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``atlas.json`` of ``folder``, checked: present, of this format and version, and matching the
    folder's manifest.

    Raises:
        FileNotFoundError: no ``atlas.json``.
        ValueError: another format or version; files that disagree with the manifest (``ManifestError``).
    """
    path = Path(folder) / ATLAS_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no {ATLAS_NAME}; make one with `lstm-interp atlas MODEL CORPUS --out {folder}`"
        )
    verify_manifest(folder, [ATLAS_NAME])
    document = read_json_file(path, "unit atlas")
    if not isinstance(document, dict) or document.get("format") != ATLAS_FORMAT:
        raise ValueError(f"{str(path)!r} is not a unit atlas (expected format {ATLAS_FORMAT!r})")
    if document.get("format_version") != ATLAS_VERSION:
        raise ValueError(
            f"{str(path)!r} is format version {document.get('format_version')!r}; this lstm_interp reads version "
            f"{ATLAS_VERSION}: build the atlas again"
        )
    return document
