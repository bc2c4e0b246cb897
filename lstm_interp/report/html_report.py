"""``write_html_report(traces, path)``: one self-contained HTML page to explore a trace character by character.

The page shows each probe text with every character's background coloured by one unit of one quantity of one layer
(Karpathy et al., 2015, figures 3-5), with controls to move between them, a tooltip with the model's top next-character
predictions, and a list of the most variable units. Nothing is fetched: the styles, the script and the data are all
inside the file, so it opens from disk, from an e-mail attachment or from a logger's artefact store.

Size. Each shown value is one byte (the index into a 256-colour table), deflated and written as base-128 text
(8/7 bytes per byte, against base64's 4/3; see :mod:`lstm_interp.report._encode`), losslessly: the page decodes
exactly the codes the writer made. Activation codes are nearly incompressible (6-7 bits of entropy per value for a
trained model), so a page costs 0.6-0.95 byte per value: all six quantities of a 2 x 512 LSTM take 4-6 KB per
character, and every unit of 20,000 characters would make a page of 72 MB (untrained) to 116 MB (trained).

A static page is therefore capped at ``max_bytes`` (:data:`STATIC_PAGE_BYTES`, 15 MB, by default). That holds every
unit of a 2 x 512 LSTM with all six quantities for about 2,500 characters (2,460 for the pretrained novel model,
3,789 for an untrained one; ``benchmarks/RESULTS.md``, "Report size"). A longer text keeps every character, every
quantity and the top-k predictions, but only the units that fit: each layer's most variable units of every quantity,
taken in turn by rank, plus every unit that ``open_on`` or a feature match names (at 20,000 characters, 66 and 57 of
512 for the novel model's two layers). The page says so above the text and points to ``lstm-interp serve``, the live
explorer, and the writer issues a :class:`UserWarning`. ``max_bytes=None`` embeds every unit whatever the size. The
page decodes only what is on screen, on first view. Only the top-k predictions are kept, never the full
``log_probs``.

Where it opens. :func:`best_feature_match` follows :func:`~lstm_interp.find_cells`'s rule, so the page opens on a
unit that visibly switches with its feature whenever one exists; a match marked ``"visible": False`` is listed with
a ``flat`` tag. When the page must open on one anyway and that unit is pinned at +-1 (cell states far from zero:
``tanh(c)`` one solid band), a note above the text gives the layer's numbers ("layers.1 cells saturated: sd of c =
90, ...", :mod:`~lstm_interp.report.saturation`) and the page opens on the quantity that varies most instead.

This module writes the page; :mod:`~lstm_interp.report.page_meta` builds the metadata it embeds (probes, features,
input series), :mod:`~lstm_interp.report.page_budget` chooses the units that fit, and ``colours.js`` (the colour
scale, shared with the live explorer), ``predict_rows.js`` (the "read and predict" rows, shared too), ``report.js``,
``report.css`` and ``template.html`` are inlined into it.

Read and predict. Under the text, a section draws the closing figure of Karpathy's blog over a window of the probe
(its first 120 characters, or from the line of the character last clicked): the characters, the shown unit's colour
under each, and the model's top-k guesses for the next character, best first, shaded green by probability, bold where
the guess is what came next. It follows the chosen unit and quantity; a page without predictions says so there.
"""

from __future__ import annotations

import html
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lstm_interp._io import atomic_write_bytes
from lstm_interp.analysis.find_cells import row_rank
from lstm_interp.analysis.visible_effect import MIN_EFFECT
from lstm_interp.report._encode import pack
from lstm_interp.report.page_budget import SLACK_BYTES, PageBudget, ShownQuantity, named_units
from lstm_interp.report.page_meta import (
    FeatureMatches,
    as_int,
    feature_entries,
    input_arrays,
    probe_entry,
    series_entry,
)
from lstm_interp.report.saturation import effect_text, flat_mask, pinned_mask, shown_name, state_saturation
from lstm_interp.tracing import QUANTITY_KINDS, QUANTITY_ORDER, Trace, most_variable_units

__all__ = ["STATIC_PAGE_BYTES", "best_feature_match", "is_visible", "ranked_feature_matches", "write_html_report"]

STATIC_PAGE_BYTES = 15_000_000
"""The default ``max_bytes`` of :func:`write_html_report`: a page that browsers open in a few seconds and that
mail, chat and experiment trackers accept as an attachment (issue 13)."""
_SERVE = "lstm-interp serve"


def write_html_report(
    traces: Trace | Sequence[Trace],
    path: str | os.PathLike,
    *,
    chars: str | Sequence[str] | None = None,
    title: str = "lstm_interp activations",
    top_k: int = 5,
    top_units: int = 20,
    feature_matches: FeatureMatches | None = None,
    step: int | None = None,
    quantities: Sequence[str] | None = None,
    open_on: Mapping[str, Any] | None = None,
    inputs: Sequence[Any] | None = None,
    max_bytes: int | None = STATIC_PAGE_BYTES,
) -> Path:
    """Write an interactive HTML page showing the activations of ``traces`` over their texts.

    Args:
        traces: one :class:`Trace` or a list, one per probe text; each may hold any subset of its names.
        path: the ``.html`` file to write (atomically; parent folders are created).
        chars: the vocabulary (``model.vocab.chars``): column ``i`` of ``log_probs`` is ``chars[i]``. Without it
            the tooltips and the read-and-predict rows show no predictions. It also spells out traces that have
            tokens but no text.
        title: the page title (shown as text, never as markup).
        top_k: predictions per character in the tooltip and the read-and-predict rows (capped at the vocabulary
            size).
        top_units: length of the list of most variable units for each layer and quantity.
        feature_matches: units that an analysis matched to a feature, e.g.
            ``{"inside quotes": [{"layer": "layers.1", "unit": 37, "score": 0.97, "sign": 1}]}``; each entry may also
            name a ``quantity`` and a ``probe`` index, and carry ``effect`` and ``visible`` (``CellScore.to_dict``
            rows do): the page marks a match that is not visible as ``flat``. Listed in the page; clicking one
            selects its unit.
        step: the training step the traces were taken at, shown in the header.
        quantities: which quantities to embed (``"cell"``, ``"hidden"``, gate names); ``None`` embeds every one the
            traces hold. Each costs about ``T * H * layers`` bytes, so restrict it for long probes.
        open_on: the unit the page shows when it opens, e.g. the best match of a feature:
            ``{"layer": "layers.1", "unit": 37}``, optionally with ``quantity`` and ``probe``, checked like a
            feature match; :func:`best_feature_match` picks the best one of ``feature_matches`` by
            :func:`~lstm_interp.find_cells`'s rule (one that visibly switches first), which is what ``run_analysis``
            and the activation monitor open on. ``None`` opens on the most variable unit of the first layer's cell
            state. A match with ``"visible": False`` (a ``CellScore.to_dict`` row whose colour barely moves with
            its feature) is opened with a note above the text saying so; if that unit is also a flat band (its
            state pinned at +-1), the note gives the layer's numbers (``"layers.1 cells saturated: sd of c = 90,
            ..."``) and the page opens on the displayed quantity that varies most (the hidden state or a gate)
            instead. The same happens when the page opens on the most variable unit and every unit is flat.

        inputs: for probes that are not text (float features, a time series), one (T, C) array or tensor of input
            values per trace (``None`` for a trace that is text): the page then draws the channels as lines above
            the steps, which are coloured blocks on the same time axis instead of characters, the series view of
            :func:`~lstm_interp.plots.plot_series`.
        max_bytes: the page's size limit (15 MB by default; see the module's "Size"). When every unit does not fit,
            the page keeps every character but only the units that do: the most variable ones of each quantity and
            those ``open_on`` and ``feature_matches`` name; it says so and points to ``lstm-interp serve``, and a
            :class:`UserWarning` is issued. The named units are kept even beyond the limit (warned too). ``None``:
            no limit, every unit is embedded.

    Returns:
        The path written.

    Raises:
        TypeError: an element of ``traces`` is not a :class:`Trace`.
        ValueError: no traces, ``top_k``, ``top_units`` or ``max_bytes`` < 1, an unknown quantity, a trace with
            nothing to show, a vocabulary whose size differs from ``log_probs``, or a feature match or ``open_on``
            naming an unknown layer or unit.

    Example::

        >>> tr = trace(model, "\\"Hello,\\" she said.")  # doctest: +SKIP
        >>> write_html_report(tr, "report.html", chars=model.vocab.chars, step=1000)  # doctest: +SKIP
        PosixPath('report.html')
    """
    traces = [traces] if isinstance(traces, Trace) else list(traces)
    if not traces:
        raise ValueError("`traces` is empty; give at least one Trace")
    for i, tr in enumerate(traces):
        if not isinstance(tr, Trace):
            raise TypeError(f"`traces[{i}]` must be a Trace, got {type(tr).__name__}")
    if top_k < 1:
        raise ValueError(f"`top_k` must be >= 1, got {top_k!r}")
    if top_units < 1:
        raise ValueError(f"`top_units` must be >= 1, got {top_units!r}")
    if max_bytes is not None and (as_int(max_bytes) is None or max_bytes < 1):
        raise ValueError(f"`max_bytes` must be a positive integer or None, got {max_bytes!r}")
    if quantities is not None:
        quantities = [quantities] if isinstance(quantities, str) else list(quantities)
        unknown = [q for q in quantities if q not in QUANTITY_KINDS]
        if unknown:
            raise ValueError(f"`quantities` has unknown names {unknown}; choose from {list(QUANTITY_ORDER)}")
    chars = list(chars) if chars is not None else None

    blobs: list[str] = []  # predictions and input series: always whole

    def add_blob(data: bytes, prefix: str = "b", into: list[str] = blobs) -> str:
        blob = pack(data)
        blob_id = f"{prefix}{len(into)}"
        deflated = ' data-deflated=""' if blob.deflated else ""
        into.append(
            f'<script type="application/octet-stream" id="{blob_id}" data-bytes="{blob.size}"{deflated}>'
            f"{blob.text}</script>"
        )
        return blob_id

    series = input_arrays(inputs, traces)
    shown: list[ShownQuantity] = []
    probes = [probe_entry(i, tr, chars, quantities, top_k, add_blob, shown) for i, tr in enumerate(traces)]
    for probe, values in zip(probes, series, strict=True):
        if values is not None:
            probe["series"] = series_entry(values, add_blob)
    features = feature_entries(feature_matches, probes)
    meta: dict[str, Any] = {"step": step, "vocab": chars, "probes": probes, "features": features}
    if open_on is not None:
        try:  # checked like a feature match, and named as what it is
            meta["open"] = feature_entries({"open_on": [open_on]}, probes)[0]["matches"][0]
        except ValueError as err:
            raise ValueError(str(err).replace("feature 'open_on'", "`open_on`")) from None
    opening, note = _opening(traces, probes, meta.get("open"), open_on, best_feature_match(feature_matches))
    if opening is not None:
        meta["open"] = opening
    if note is not None:
        meta["note"] = note

    fields = {
        "TITLE": html.escape(title),
        "SUBTITLE": html.escape(_subtitle(traces, step)),
        "CSS": _asset("report.css"),
        # The colour scale is its own script, run before report.js, so that the live explorer loads the very same
        # file (lstm_interp/report/colours.js) instead of keeping a copy of the paper's convention.
        "COLOURS": _asset("colours.js"),
        # The "read and predict" rows (the blog's figure), drawn by the renderer the live explorer loads too.
        "PREDICT": _asset("predict_rows.js"),
        "JS": _asset("report.js"),
    }
    keep: dict[str, list[int]] | None = None  # the units each layer embeds; None: every unit
    if max_bytes is not None:
        costs = PageBudget(shown, named_units(features, meta.get("open")))
        fixed = len(_render(fields, meta, blobs, []).encode("utf-8")) + SLACK_BYTES
        keep = costs.choose(max_bytes - fixed)
    while True:
        page = _page(fields, meta, blobs, shown, keep, top_units, max_bytes, add_blob).encode("utf-8")
        if max_bytes is None or len(page) <= max_bytes:
            break
        # The estimate erred (rarely: deflating rows one by one costs more than deflating a blob): drop units
        # from the end of the queue until the excess is covered, and build the page again.
        keep = keep if keep is not None else {item.layer: list(range(len(item.codes))) for item in shown}
        if not costs.drop(keep, len(page) - max_bytes):
            break  # only named units and one per layer are left: the page stays over, and says so
    path = Path(path)
    atomic_write_bytes(path, page)
    if max_bytes is not None:
        _warn_if_limited(path, meta, len(page), max_bytes)
    return path


def _page(
    fields: dict[str, str],
    meta: dict[str, Any],
    blobs: list[str],
    shown: list[ShownQuantity],
    keep: dict[str, list[int]] | None,
    top_units: int,
    max_bytes: int | None,
    add_blob: Callable[..., str],
) -> str:
    """The page with the activation blobs of the ``keep`` units (``None``: every unit); fills ``meta``'s entries."""
    activations: list[str] = []
    limited: dict[str, dict[str, Any]] = {}
    for item in shown:
        rows = keep.get(item.layer) if keep is not None else None
        units = int(item.codes.shape[0])
        if rows is not None and len(rows) < units:
            item.entry["rows"] = rows
            codes = item.codes[rows]
            limited[item.layer] = {"name": item.layer, "shown": len(rows), "units": units}
        else:
            item.entry.pop("rows", None)
            codes, rows = item.codes, None
        wanted = set(rows) if rows is not None else None
        item.entry["top"] = [
            [unit, round(variance, 5)] for unit, variance in item.ranking if wanted is None or unit in wanted
        ][:top_units]
        item.entry["blob"] = add_blob(np.ascontiguousarray(codes).tobytes(), "a", activations)
    meta.pop("limit", None)
    if limited:
        chars = sum(len(probe["text"]) for probe in meta["probes"])  # one character per step, always
        meta["limit"] = {"maxBytes": max_bytes, "chars": chars, "layers": list(limited.values()), "serve": _SERVE}
    return _render(fields, meta, blobs, activations)


def _render(fields: dict[str, str], meta: dict[str, Any], blobs: list[str], activations: list[str]) -> str:
    page_fields = {**fields, "META": _script_json(meta), "BLOBS": "\n".join(blobs + activations)}
    # One pass over the template, so text inserted for one field is never scanned for another field's marker.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: page_fields[m.group(1)], _asset("template.html"))


def _warn_if_limited(path: Path, meta: dict[str, Any], size: int, max_bytes: int) -> None:
    limit = meta.get("limit")
    if limit is None and size <= max_bytes:
        return
    message = f"{path.name}: "
    if limit is not None:
        held = ", ".join(f"{layer['shown']} of {layer['units']} units of {layer['name']}" for layer in limit["layers"])
        message += (
            f"every unit over {limit['chars']:,} characters does not fit in a static page of max_bytes="
            f"{max_bytes:,}; it holds {held} (the most variable and the named ones). "
        )
    if size > max_bytes:
        message += f"The page is {size:,} bytes, more than max_bytes={max_bytes:,}, with no unit left to drop. "
    warnings.warn(
        message + f"To explore every unit of a text this long, use `{_SERVE}` (or pass max_bytes=None).",
        UserWarning,
        stacklevel=3,
    )


def _opening(
    traces: list[Trace],
    probes: list[dict[str, Any]],
    entry: dict[str, Any] | None,
    open_on: Mapping[str, Any] | None,
    best: Mapping[str, Any] | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """The unit the page opens on, and the note it shows above the text when that is not simply ``entry``.

    A match that visibly switches with its feature (or names no ``visible`` flag) is opened as it is. One that does
    not is still opened, with a note saying so, unless that unit is pinned at +-1 in the quantity shown (a solid
    deep band, :func:`~lstm_interp.report.saturation.pinned_mask`): then the layer's state is measured
    (:func:`~lstm_interp.report.saturation.state_saturation`), the note gives its numbers, and the page opens on the
    displayed quantity that varies most, on the same unit where it varies there. With no ``entry`` the page opens
    on the first layer's most variable unit: the same note and remedy apply when every unit of it is flat and the
    most variable one is pinned. ``best`` (:func:`best_feature_match`) says whether some match does switch, so that
    the note never claims that none does when the page was merely told to open elsewhere.
    """
    if entry is not None and open_on is not None and is_visible(open_on):
        return entry, None
    index = int(entry.get("probe", 0)) if entry is not None else 0
    tr, probe = traces[index], probes[index]
    layer = entry["layer"] if entry is not None else probe["layers"][0]["name"]
    held = [q["name"] for shown in probe["layers"] if shown["name"] == layer for q in shown["quantities"]]
    if not held:
        return entry, None  # this probe's trace lacks the layer: the page falls back to its first layer
    # What report.js opens on: the entry's quantity, else the cell state, else the first quantity held.
    quantity = (entry or {}).get("quantity") or ("cell" if "cell" in held else held[0])
    if quantity not in held:
        return entry, None
    match = _describe(open_on, layer, quantity) if entry is not None and open_on is not None else ""
    some_switch = best is not None and is_visible(best)  # then this unit was asked for, not the best there is
    if entry is not None and not bool(pinned_mask(tr, layer, quantity, unit=entry["unit"])[0]):
        if some_switch:
            return entry, f"The unit asked for, {match}, does not visibly switch with its feature."
        return entry, f"No matched unit visibly switches with its feature; the best, {match}, is shown anyway."
    if entry is None:
        # The most variable unit that is not flat, if any: when there is one, the page has something to show.
        top = most_variable_units(tr, quantity, 1, layer=layer, skip_flat=True)[0].unit
        if not bool(pinned_mask(tr, layer, quantity, unit=top)[0]):
            return None, None
    saturation = state_saturation(tr, [layer], quantity, allowed=held)
    lead = "The unit asked for" if some_switch else "The best match"
    note = saturation.note() + (f". {lead}, {match}, does not visibly switch." if match else ".")
    if saturation.instead is None:
        return entry, note
    instead = saturation.instead
    unit = entry["unit"] if entry is not None else -1
    # The same unit where it varies in that quantity, else the quantity's most variable unit.
    if unit < 0 or bool(flat_mask(tr, layer, instead, unit=unit)[0]):
        unit = most_variable_units(tr, instead, 1, layer=layer, skip_flat=True)[0].unit
    return {**(entry or {"layer": layer}), "quantity": instead, "unit": unit}, note


def _describe(match: Mapping[str, Any], layer: str, quantity: str) -> str:
    """``"layers.0 #85 for position_in_line (r 0.67; tanh(c) moves by +0.03 with it)"``: a match, for a note."""
    text = f"{layer} #{match.get('unit')}"
    if match.get("feature"):
        text += f" for {match['feature']}"
    details = []
    if match.get("score") is not None:
        details.append(f"{'AUC' if match.get('metric') == 'auc' else 'r'} {float(match['score']):.2f}")
    if match.get("effect") is not None:
        details.append(
            f"{shown_name(quantity)} moves by {effect_text(match['effect'])} with it, under the {MIN_EFFECT} that shows"
        )
    return text + (f" ({'; '.join(details)})" if details else "")


def _subtitle(traces: list[Trace], step: int | None) -> str:
    first = traces[0]
    parts = [] if step is None else [f"step {step:,}"]
    reverse = sum(name.endswith(".reverse") for name in first.layer_names)
    layers = first.num_layers - reverse
    shape = f"{layers} layer{'s' if layers != 1 else ''}" + (" × 2 directions" if reverse else "")
    parts.append(f"{first.cell.upper()}, {shape}")
    chars = sum(len(tr.tokens) for tr in traces)
    parts.append(f"{len(traces)} probe{'s' if len(traces) != 1 else ''}, {chars:,} characters")
    return " · ".join(parts)


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` can end the element or open a comment."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files("lstm_interp.report").joinpath(name).read_text(encoding="utf-8")


def ranked_feature_matches(feature_matches: FeatureMatches | None) -> list[Mapping[str, Any]]:
    """Each feature's first match, best first across features: :func:`~lstm_interp.analysis.find_cells`'s order.

    A feature's rows already come in ``find_cells``'s order, so its first row is its best unit by that rule. Across
    features the rule is the same, as the live explorer's feature list has it: matches that visibly switch
    (``visible``) and beat their controls (``beats_controls``; a feature without controls has none to lose to)
    first, then visible ones that do not beat them, then the rest (units whose colour barely moves with the
    feature: a flat band); within each group by strength, which puts both metrics on one scale (``|r|``, or
    ``2 * AUC - 1`` as :attr:`~lstm_interp.analysis.CellScore.strength`). A row without ``visible`` (an index file
    written before the flag) counts as visible. Ties keep the features' order.
    """
    if not feature_matches:
        return []
    firsts = [rows[0] for rows in feature_matches.values() if rows]
    return sorted(firsts, key=row_rank)


def best_feature_match(feature_matches: FeatureMatches | None) -> Mapping[str, Any] | None:
    """The match a page or a figure opens on: the first of :func:`ranked_feature_matches`, or ``None`` if there is
    none. It visibly switches with its feature whenever any feature's best unit does."""
    ranked = ranked_feature_matches(feature_matches)
    return ranked[0] if ranked else None


def is_visible(row: Mapping[str, Any]) -> bool:
    """Whether a match visibly switches with its feature (``CellScore.visible``); a row without the flag counts as
    visible, as the index files written before it."""
    return row.get("visible") is not False
