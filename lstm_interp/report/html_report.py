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
"""

from __future__ import annotations

import html
import json
import operator
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lstm_interp._io import atomic_write_bytes
from lstm_interp.report._encode import deflate, display_codes, pack, top_predictions
from lstm_interp.tracing import QUANTITY_KINDS, QUANTITY_ORDER, Trace, most_variable_units

FeatureMatches = Mapping[str, Sequence[Mapping[str, Any]]]
# Characters shown when a trace has no text and no vocabulary is given (a trace of a foreign module, say).
_PLACEHOLDER = "\u00b7"
_PROBE_LABEL_CHARS = 40
STATIC_PAGE_BYTES = 15_000_000
"""The default ``max_bytes`` of :func:`write_html_report`: a page that browsers open in a few seconds and that
mail, chat and experiment trackers accept as an attachment (issue 13)."""
# Room kept for what the size estimate leaves out: the lists of embedded and most variable units, rounding.
_SLACK_BYTES = 64_000
# The markup around one blob: <script type="application/octet-stream" id="a12" data-bytes="123456" ...></script>.
_BLOB_MARKUP = 100
_SERVE = "lstm-interp serve"


@dataclass
class _Shown:
    """One embedded quantity of one layer of one probe, before its blob is made: the page entry it fills, its codes
    and its units ranked by variance (every unit, most variable first)."""

    layer: str
    entry: dict[str, Any]
    codes: np.ndarray  # (H, T) uint8
    ranking: list[tuple[int, float]]


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
            the tooltips show no predictions. It also spells out traces that have tokens but no text.
        title: the page title (shown as text, never as markup).
        top_k: predictions per character in the tooltip (capped at the vocabulary size).
        top_units: length of the list of most variable units for each layer and quantity.
        feature_matches: units that an analysis matched to a feature, e.g.
            ``{"inside quotes": [{"layer": "layers.1", "unit": 37, "score": 0.97, "sign": 1}]}``; each entry may also
            name a ``quantity`` and a ``probe`` index. Listed in the page; clicking one selects its unit.
        step: the training step the traces were taken at, shown in the header.
        quantities: which quantities to embed (``"cell"``, ``"hidden"``, gate names); ``None`` embeds every one the
            traces hold. Each costs about ``T * H * layers`` bytes, so restrict it for long probes.
        open_on: the unit the page shows when it opens, e.g. the best match of a feature:
            ``{"layer": "layers.1", "unit": 37}``, optionally with ``quantity`` and ``probe``, checked like a
            feature match; :func:`best_feature_match` picks the best-scoring one of ``feature_matches``, which is
            what ``run_analysis`` and the activation monitor open on. ``None`` opens on the most variable unit of
            the first layer's cell state.

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
    if max_bytes is not None and (_as_int(max_bytes) is None or max_bytes < 1):
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

    series = _check_inputs(inputs, traces)
    shown: list[_Shown] = []
    probes = [_probe(i, tr, chars, quantities, top_k, add_blob, shown) for i, tr in enumerate(traces)]
    for probe, values in zip(probes, series, strict=True):
        if values is not None:
            probe["series"] = _series(values, add_blob)
    features = _features(feature_matches, probes)
    meta: dict[str, Any] = {"step": step, "vocab": chars, "probes": probes, "features": features}
    if open_on is not None:
        try:  # checked like a feature match, and named as what it is
            meta["open"] = _features({"open_on": [open_on]}, probes)[0]["matches"][0]
        except ValueError as err:
            raise ValueError(str(err).replace("feature 'open_on'", "`open_on`")) from None

    fields = {
        "TITLE": html.escape(title),
        "SUBTITLE": html.escape(_subtitle(traces, step)),
        "CSS": _asset("report.css"),
        "JS": _asset("report.js"),
    }
    keep: dict[str, list[int]] | None = None  # the units each layer embeds; None: every unit
    if max_bytes is not None:
        costs = _UnitCosts(shown, _named_units(features, meta.get("open")))
        fixed = len(_render(fields, meta, blobs, []).encode("utf-8")) + _SLACK_BYTES
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
    shown: list[_Shown],
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


def _named_units(features: list[dict[str, Any]] | None, open_match: dict[str, Any] | None) -> dict[str, list[int]]:
    """The units the page must hold whatever its size, by layer: the one it opens on, then every feature match's."""
    named: dict[str, list[int]] = {}
    matches = ([open_match] if open_match else []) + [m for f in features or [] for m in f["matches"]]
    for match in matches:
        units = named.setdefault(match["layer"], [])
        if match["unit"] not in units:
            units.append(match["unit"])
    return named


class _UnitCosts:
    """Which units a page that cannot hold them all keeps, from what each costs.

    The queue: the named units, then by rank, layer after layer and quantity after quantity (the most variable unit
    of each quantity, then the second of each...), each unit once. A unit's cost is its rows, one per probe and
    quantity, deflated one by one and written as base-128 text: a slight over-estimate of its share of a blob, as
    separate rows deflate a little worse than their concatenation.
    """

    def __init__(self, shown: list[_Shown], named: dict[str, list[int]]) -> None:
        self.shown = shown
        self.by_layer: dict[str, list[_Shown]] = {}
        for item in shown:
            self.by_layer.setdefault(item.layer, []).append(item)
        self.named = {layer: set(units) for layer, units in named.items() if layer in self.by_layer}
        self._cost: dict[tuple[str, int], int] = {}
        order = [(layer, unit) for layer, units in named.items() if layer in self.by_layer for unit in units]
        seen = set(order)
        depth = max(len(item.ranking) for item in shown)
        for rank in range(depth):
            for layer, items in self.by_layer.items():
                for item in items:
                    if rank < len(item.ranking) and (layer, item.ranking[rank][0]) not in seen:
                        seen.add((layer, item.ranking[rank][0]))
                        order.append((layer, item.ranking[rank][0]))
        self.queue = order

    def cost(self, layer: str, unit: int) -> int:
        if (layer, unit) not in self._cost:
            self._cost[layer, unit] = sum(
                8 * min(len(deflate(row)), len(row)) // 7 + 1
                for row in (item.codes[unit].tobytes() for item in self.by_layer[layer])
            )
        return self._cost[layer, unit]

    def required(self, layer: str, unit: int, keep: dict[str, list[int]]) -> bool:
        return unit in self.named.get(layer, ()) or not keep[layer] or keep[layer] == [unit]

    def choose(self, budget: int) -> dict[str, list[int]] | None:
        """Per layer, the sorted units that fit in ``budget`` bytes, taken in queue order until the next one does
        not fit (named units and each layer's first are kept anyway); ``None`` when every unit fits."""
        markup = _BLOB_MARKUP * len(self.shown)
        if sum(8 * item.codes.size // 7 + 1 for item in self.shown) + markup <= budget:
            return None  # fits even incompressible: nothing to estimate
        keep: dict[str, list[int]] = {layer: [] for layer in self.by_layer}
        used, full = markup, False
        for layer, unit in self.queue:
            required = self.required(layer, unit, keep)
            if full and not required:
                continue
            cost = self.cost(layer, unit)
            if used + cost > budget and not required:
                full = True  # and stop: a cheaper unit further down would jump the queue
                continue
            keep[layer].append(unit)
            used += cost
        return {layer: sorted(units) for layer, units in keep.items()} if full else None

    def drop(self, keep: dict[str, list[int]], excess: int) -> bool:
        """Remove kept units from the end of the queue, worth at least ``excess`` bytes, from ``keep`` (in place);
        ``False`` when none can go (only named units and one per layer are left)."""
        dropped = False
        for layer, unit in reversed(self.queue):
            if excess <= 0:
                break
            if unit not in keep[layer] or self.required(layer, unit, keep):
                continue
            keep[layer].remove(unit)
            excess -= self.cost(layer, unit)
            dropped = True
        return dropped


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


def _probe(
    index: int,
    tr: Trace,
    chars: list[str] | None,
    quantities: list[str] | None,
    top_k: int,
    add_blob: Callable[[bytes], str],
    shown_out: list[_Shown],
) -> dict[str, Any]:
    """The page's description of one trace. Its predictions go through ``add_blob`` and are referred to by id; its
    activation codes are appended to ``shown_out``, whose blobs are made once the units that fit are known."""
    wanted = [q for q in QUANTITY_ORDER if q in tr.quantities and (quantities is None or q in quantities)]
    T = len(tr.tokens)
    layers = []
    for layer in tr.layer_names:
        shown = []
        for q in wanted:
            name = f"{layer}.{q}"
            if name not in tr:
                continue
            values = tr[name]
            if values.ndim != 2 or values.shape[0] != T:
                raise ValueError(f"`{name}` of trace {index} has shape {tuple(values.shape)}, expected ({T}, H)")
            codes = display_codes(values, q)
            entry = {"name": q, "kind": QUANTITY_KINDS[q], "units": int(codes.shape[0])}
            ranked = most_variable_units(tr, q, int(codes.shape[0]), layer=layer)
            ranking = [(row.unit, row.variance) for row in ranked]
            shown_out.append(_Shown(layer, entry, codes.numpy(), ranking))
            shown.append(entry)
        if shown:
            layers.append({"name": layer, "quantities": shown})
    if not layers:
        asked = f" among `quantities` {quantities}" if quantities is not None else ""
        raise ValueError(f"trace {index} holds no quantity the report can show{asked}; it holds {list(tr)}")

    predictions = None
    if chars is not None and "log_probs" in tr:
        log_probs = tr["log_probs"]
        if log_probs.shape[-1] != len(chars):
            raise ValueError(
                f"`chars` has {len(chars)} characters but `log_probs` of trace {index} has {log_probs.shape[-1]} "
                "columns; pass the model's vocabulary (`model.vocab.chars`)"
            )
        k = min(top_k, len(chars))
        ids, probs = top_predictions(log_probs, k)
        predictions = {"k": k, "ids": add_blob(ids), "probs": add_blob(probs)}

    text = _text(tr, chars)
    named = " ".join(tr.labels or []) if tr.has_token_labels else text
    label = named[:_PROBE_LABEL_CHARS].replace("\n", " ") + ("…" if len(named) > _PROBE_LABEL_CHARS else "")
    label = f"{index + 1}: {label}"
    entry = {"label": label, "text": text, "cell": tr.cell, "layers": layers, "predictions": predictions}
    if tr.has_token_labels:  # the page draws each step's string, as wide as it is
        entry["tokens"] = tr.labels
    return entry


def _text(tr: Trace, chars: list[str] | None) -> str:
    """The characters to show, exactly one per time step."""
    T = len(tr.tokens)
    if tr.text is not None and len(tr.text) == T:
        return tr.text
    if tr.text is not None:
        raise ValueError(f"the trace's text has {len(tr.text)} characters but its tokens {T}")
    if chars is not None and T and int(tr.tokens.min()) >= 0 and int(tr.tokens.max()) < len(chars):
        return "".join(chars[int(i)] for i in tr.tokens)
    return _PLACEHOLDER * T


def _features(feature_matches: FeatureMatches | None, probes: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Checked, JSON-ready feature matches: each must point at a layer, unit (and probe) that the page holds."""
    if feature_matches is None:
        return None
    units: dict[str, int] = {}
    for probe in probes:
        for layer in probe["layers"]:
            units[layer["name"]] = max(units.get(layer["name"], 0), *(q["units"] for q in layer["quantities"]))
    features = []
    for feature, matches in feature_matches.items():
        rows = []
        for match in matches:
            layer, unit, probe = match.get("layer"), _as_int(match.get("unit")), match.get("probe")
            if layer not in units:
                raise ValueError(f"feature {feature!r} names layer {layer!r}; the report has {list(units)}")
            if unit is None or not 0 <= unit < units[layer]:
                raise ValueError(
                    f"feature {feature!r} names unit {match.get('unit')!r} of {layer!r}, which has {units[layer]} units"
                )
            if probe is not None and not (_as_int(probe) is not None and 0 <= probe < len(probes)):
                raise ValueError(f"feature {feature!r} names probe {probe!r}; the report has {len(probes)} probes")
            row: dict[str, Any] = {"layer": layer, "unit": unit}
            if match.get("quantity") is not None:
                row["quantity"] = str(match["quantity"])
            if probe is not None:
                row["probe"] = int(probe)
            for key in ("score", "sign"):
                if match.get(key) is not None:
                    row[key] = float(match[key])
            rows.append(row)
        features.append({"name": str(feature), "matches": rows})
    return features


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer of any kind (numpy and 0-d torch included), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


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


def best_feature_match(feature_matches: FeatureMatches | None) -> Mapping[str, Any] | None:
    """The match with the highest strength over every feature (the first one on ties), or ``None`` if there is none.

    Strength puts both metrics on one scale: ``|r|`` for a continuous feature, ``2 * AUC - 1`` for a binary one
    (``score`` is ``max(AUC, 1 - AUC)``), as :attr:`~lstm_interp.analysis.CellScore.strength` does.
    """
    if not feature_matches:
        return None
    rows = [row for rows in feature_matches.values() for row in rows]
    if not rows:
        return None

    def strength(row: Mapping[str, Any]) -> float:
        score = float(row.get("score", 0.0))
        return 2 * score - 1 if row.get("metric") == "auc" else score

    return max(rows, key=strength)


def _check_inputs(inputs: Sequence[Any] | None, traces: list[Trace]) -> list[np.ndarray | None]:
    """One (T, C) float array (or ``None``) per trace, with errors that name the trace and both shapes."""
    if inputs is None:
        return [None] * len(traces)
    if len(inputs) != len(traces):
        raise ValueError(f"`inputs` has {len(inputs)} entries for {len(traces)} traces; give one per trace (or None)")
    arrays: list[np.ndarray | None] = []
    for i, (values, tr) in enumerate(zip(inputs, traces, strict=True)):
        if values is None:
            arrays.append(None)
            continue
        x = np.asarray(values.detach().cpu().float() if hasattr(values, "detach") else values, dtype=np.float32)
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2 or len(x) != tr.num_steps:
            raise ValueError(f"`inputs[{i}]` has shape {x.shape}; expected ({tr.num_steps}, channels) for trace {i}")
        arrays.append(x)
    return arrays


def _series(values: np.ndarray, add_blob: Callable[[bytes], str]) -> dict[str, Any]:
    """The page's description of a probe's input channels: each quantised to 8 bits between its own min and max."""
    x = np.nan_to_num(values.astype(np.float64))
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    codes = np.round((x - lo) / span * 255).astype(np.uint8).T.copy()  # (C, T): one channel contiguous
    return {"channels": int(x.shape[1]), "min": lo.tolist(), "max": hi.tolist(), "blob": add_blob(codes.tobytes())}
