"""``write_atlas_folder``: a :class:`~lstm_interp.analysis.UnitAtlas` as a folder to read, one page per unit.

The folder (what ``lstm-interp atlas MODEL CORPUS --out DIR`` writes):

- ``atlas.json`` and ``contexts.safetensors``: the atlas itself (:meth:`UnitAtlas.write
  <lstm_interp.analysis.UnitAtlas.write>`), read back by :meth:`UnitAtlas.load <lstm_interp.analysis.UnitAtlas.load>`
  and by ``lstm-interp serve MODEL --atlas DIR``;
- ``index.html``: one table of every unit (layer, unit, best feature and its strength, how far its colour moves
  with it, whether it is explained, saturation, the change in loss when zeroed, its gate habits, the characters it
  raises, its highest passage), sortable by any column (click a header; again to reverse), with a filter for the
  "hard to tell" units (no feature explains them) and one per layer; each row links to the unit's page. It opens
  in the atlas's order: units a feature explains and whose value is not pinned at +-1 first, strongest first, then
  explained but pinned ones, then the rest; so no pinned unit heads the table while one that switches exists;
- ``units/<layer>-<unit>.html`` (``units/layers.1-171.html``): the unit's card, drawn by ``atlas_card.js`` (the live
  explorer draws the same card): its contexts as text on the colour of the unit's value (-1 red, +1 blue), its
  histogram, its features with their controls, its output effect and gate habits;
- ``assets/``: ``colours.js`` (the report's colour scale), ``atlas_card.js``, ``atlas_index.js``, ``atlas_unit.js``
  and ``atlas.css``, shared by every page;
- ``manifest.json``: the model, the corpus (length, sha256, files), the arguments and every file's sha256.

Every page has a Content-Security-Policy (scripts and styles only from the folder's own files, nothing inline, no
network) and puts every text into the DOM with ``textContent``: a corpus full of ``<script>`` shows it as text. The
card data is embedded as JSON in a non-executed ``<script type="application/json">``, escaped so it cannot end it.

The folder is built beside ``out`` and swapped into place whole (:func:`~lstm_interp._io.atomic_folder`): a crash at
any moment leaves the previous atlas or none. A folder holding files an atlas run did not write is refused before
any work (:func:`~lstm_interp.manifest.check_replaceable`) unless ``overwrite``.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from lstm_interp._io import atomic_folder, atomic_write_text
from lstm_interp.analysis._index_files import Corpus
from lstm_interp.analysis.atlas_cards import ATLAS_NAME, CONTEXTS_NAME
from lstm_interp.analysis.unit_atlas import UnitAtlas
from lstm_interp.manifest import check_replaceable, write_manifest
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.report.html_report import _script_json
from lstm_interp.report.saturation import shown_name

__all__ = [
    "ATLAS_KIND",
    "check_atlas_folder",
    "index_rows",
    "page_meta",
    "run_atlas",
    "unit_page",
    "write_atlas_folder",
]

ATLAS_KIND = "unit_atlas"
ASSETS = ("colours.js", "atlas_card.js", "atlas_index.js", "atlas_unit.js", "atlas.css")
ATLAS_FOLDER_NAMES = (ATLAS_NAME, CONTEXTS_NAME, "index.html", "units", "assets")
# Scripts and styles from the folder's own files only: no inline script could run even if text became markup.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)
SNIPPET = 12  # characters either side of the peak in the index's passage column

Log = Callable[[str], None]


def check_atlas_folder(out: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse, before any work, an ``out`` holding files an atlas run does not write (see ``check_replaceable``).

    Raises:
        FileExistsError, NotADirectoryError: naming the folder and its foreign files.
    """
    check_replaceable(out, ATLAS_KIND, ATLAS_FOLDER_NAMES, overwrite=overwrite)


def unit_page(layer: str, unit: int) -> str:
    """The page of a unit, relative to the folder: ``units/layers.1-171.html``."""
    return f"units/{layer}-{unit}.html"


def run_atlas(
    model: CharLSTM,
    corpus: Corpus,
    out: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
    log: Log | None = None,
    **options: Any,
) -> Path | None:
    """Build the atlas of ``model`` over ``corpus`` (:meth:`UnitAtlas.build <lstm_interp.analysis.UnitAtlas.build>`,
    with ``options``, the Trainer's arguments included) and write its folder; the folder is checked first, so a
    refused one costs no work. Returns the folder on rank 0, ``None`` on the other ranks of a multi-process pass.

    Raises:
        FileExistsError: ``out`` holds files an atlas does not write (before any work).
        ValueError, VocabularyError, FileNotFoundError, TypeError: as ``UnitAtlas.build`` raises them.
    """
    check_atlas_folder(out, overwrite=overwrite)
    atlas = UnitAtlas.build(model, corpus, log=log, **options)
    if atlas is None:  # not rank 0 of a pass over several processes: rank 0 writes the folder
        return None
    arguments = {**{k: v for k, v in options.items() if k != "trainer"}, "title": title}
    return write_atlas_folder(atlas, out, title=title, overwrite=overwrite, arguments=arguments, log=log)


def write_atlas_folder(
    atlas: UnitAtlas,
    out: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
    arguments: Mapping[str, Any] | None = None,
    log: Log | None = None,
) -> Path:
    """Write the atlas's folder (module docstring) at ``out``, replacing it whole.

    Args:
        atlas: a finished atlas (built, or loaded).
        out: the folder.
        title: the pages' title (default ``"Unit atlas"``); shown as text.
        overwrite: replace ``out`` even if it holds files an atlas run did not write.
        arguments: what made the atlas, for the manifest.
        log: called with a line when written.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``out`` holds files an atlas run does not write (nothing is changed).
        ValueError: an atlas not finished.
    """
    check_atlas_folder(out, overwrite=overwrite)
    cards = atlas.cards()  # an unfinished atlas fails here, before anything is written
    title = title or "Unit atlas"
    meta = page_meta(atlas.meta)
    subtitle = _subtitle(atlas.meta)
    with atomic_folder(out) as staging:
        atlas.write(staging)
        (staging / "assets").mkdir()
        for name in ASSETS:
            atomic_write_text(staging / "assets" / name, _asset(name))
        rows = index_rows(atlas)
        rules = (
            f"explained: the unit's best feature on the first {atlas.meta['features']['chars']:,} characters passes "
            f"find_cells's ranking rule ({atlas.meta['features']['explains']}); pinned: flat near ±1 there; "
            f"saturated: {atlas.meta['saturation']} over the whole corpus; Δ loss: nats/char when its state is zeroed."
        )
        fields = {"TITLE": title, "SUBTITLE": subtitle, "RULES": rules}
        page = _fill("atlas_index.html", fields, {"META": _script_json(meta), "ROWS": _script_json(rows)})
        atomic_write_text(staging / "index.html", page)
        (staging / "units").mkdir()
        for i, card in enumerate(cards):
            previous, following = cards[i - 1], cards[(i + 1) % len(cards)]
            links = {
                "PREVIOUS": Path(unit_page(previous["layer"], previous["unit"])).name,
                "NEXT": Path(unit_page(following["layer"], following["unit"])).name,
            }
            unit_fields = {"TITLE": f"{title}: {card['layer']}:{card['unit']}", "SUBTITLE": subtitle, **links}
            page = _fill("atlas_unit.html", unit_fields, {"META": _script_json(meta), "CARD": _script_json(card)})
            atomic_write_text(staging / unit_page(card["layer"], card["unit"]), page)
        texts = {"corpus": atlas.meta["corpus"]} if atlas.meta.get("corpus") else {}
        write_manifest(staging, ATLAS_KIND, model=atlas.meta.get("model"), texts=texts, arguments=arguments)
    if log is not None:
        log(f"wrote {out}: {len(cards):,} unit pages; open {Path(out) / 'index.html'}")
    return Path(out)


def index_rows(atlas: UnitAtlas) -> list[dict[str, Any]]:
    """The index table's rows, in the atlas's order (module docstring): each unit's layer, unit, page, best feature,
    strength, effect, ``explained``, saturation, ``pinned``, change in loss, gate habits, first raised character and
    highest passage (``snippet``)."""
    rows = []
    for order, card in enumerate(atlas.cards()):
        # A best row of strength 0 (a constant unit: AUC 0.5, r 0) names no feature; the table says none.
        best = card["features"][0] if card["features"] and card["features"][0]["strength"] > 0 else None
        gates, ablation, readout = card["gates"] or {}, card["ablation"] or {}, card["readout"]
        rows.append({
            "layer": card["layer"], "unit": card["unit"], "order": order,
            "href": unit_page(card["layer"], card["unit"]),
            "feature": best and best["feature"], "metric": best and best["metric"],
            "strength": best and best["strength"], "effect": best and best["effect"],
            "explained": card["explained"], "pinned": bool(card["pinned"]), "saturation": card["saturation"],
            "delta_loss": ablation.get("delta_loss"), "memory_mean": gates.get("memory_mean"),
            "write_fraction": gates.get("write_fraction"),
            "raised": readout["raised"][0]["char"] if readout else None,
            "snippet": _snippet(card["top"][0]) if card["top"] else None,
        })  # fmt: skip
    tier = lambda r: (0 if r["explained"] else 2) + (1 if r["pinned"] else 0)  # noqa: E731
    rows.sort(key=lambda r: (tier(r), -(r["strength"] or 0.0), r["order"]))
    for rank, row in enumerate(rows):
        row["rank"] = rank
    return rows


def _snippet(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context cut to ``SNIPPET`` characters either side of its peak, codes too."""
    chars, codes, peak = list(context["text"]), base64.b64decode(context["codes"]), context["peak"]
    start = max(0, peak - SNIPPET)
    end = peak + SNIPPET + 1
    shown = base64.b64encode(codes[start:end]).decode()
    return {"text": "".join(chars[start:end]), "codes": shown, "peak": peak - start}


def page_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What ``atlas_card.js`` reads of the atlas's meta (the pages embed it; the explorer sends it with a card)."""
    keep = ("k", "window", "quantity", "kind", "pinned_level", "features", "ablation", "gates", "layers")
    shown = {key: meta.get(key) for key in keep}
    shown["features"] = {key: meta["features"][key] for key in ("chars", "explains", "explains_strength")}
    return shown


def _subtitle(meta: Mapping[str, Any]) -> str:
    corpus = meta.get("corpus") or {}
    files = corpus.get("files")
    where = f" ({', '.join(Path(f).name for f in files[:3])}{', …' if len(files) > 3 else ''})" if files else ""
    ablation = meta.get("ablation")
    parts = [
        f"{meta['cell'].upper()} {len(meta['layer_names'])} × {meta['hidden_size']}, {', '.join(meta['layers'])}",
        f"{shown_name(meta['quantity'])} over {meta['steps']:,} characters{where}",
        f"top and bottom {meta['k']} contexts of ±{meta['window']} characters",
        f"features on the first {meta['features']['chars']:,} characters",
        f"ablations on the first {ablation['chars']:,}" if ablation else "no ablations",
    ]
    return " · ".join(parts)


def _fill(template: str, text: Mapping[str, str], raw: Mapping[str, str]) -> str:
    """The template with ``{{NAME}}`` markers replaced in one pass: ``text`` fields escaped as HTML text, ``raw``
    ones (script-safe JSON) as they are, and the CSP."""
    fields = {name: html.escape(value, quote=True) for name, value in text.items()} | dict(raw) | {"CSP": CSP}
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: fields[m.group(1)], _asset(template))


def _asset(name: str) -> str:
    return resources.files("lstm_interp.report").joinpath(name).read_text(encoding="utf-8")
