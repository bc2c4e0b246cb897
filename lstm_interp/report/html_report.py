"""``write_html_report(traces, path)``: one self-contained HTML page to explore a trace character by character.

The page shows each probe text with every character's background coloured by one unit of one quantity of one layer
(Karpathy et al., 2015, figures 3-5), with controls to move between them, a tooltip with the model's top next-character
predictions, and a list of the most variable units. Nothing is fetched: the styles, the script and the data are all
inside the file, so it opens from disk, from an e-mail attachment or from a logger's artefact store.

Size. Each shown value is one byte (the index into a 256-colour table), deflated where that helps and base64
encoded, so a quantity costs at most ``4/3 * T * H`` bytes per layer. A 20,000-character probe through a 2 x 512 LSTM
is therefore at most ~27 MB per quantity (both layers) and ~164 MB for all six; the trace of an untrained model
deflated to 88 MB for all six and 29 MB for ``quantities=("cell", "hidden")``. Everything is embedded by default, as
short probes are cheap; pass ``quantities`` for long ones. The page decodes only what is on screen, on first view.
Only the top-k predictions are kept, never the full ``log_probs``.
"""

from __future__ import annotations

import html
import json
import operator
import os
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lstm_interp._io import atomic_write_text
from lstm_interp.report._encode import display_codes, pack, top_predictions
from lstm_interp.tracing import QUANTITY_KINDS, QUANTITY_ORDER, Trace, most_variable_units

FeatureMatches = Mapping[str, Sequence[Mapping[str, Any]]]
# Characters shown when a trace has no text and no vocabulary is given (a trace of a foreign module, say).
_PLACEHOLDER = "\u00b7"
_PROBE_LABEL_CHARS = 40


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

    Returns:
        The path written.

    Raises:
        TypeError: an element of ``traces`` is not a :class:`Trace`.
        ValueError: no traces, ``top_k`` or ``top_units`` < 1, an unknown quantity, a trace with nothing to show,
            a vocabulary whose size differs from ``log_probs``, or a feature match or ``open_on`` naming an unknown
            layer or unit.

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
    if quantities is not None:
        quantities = [quantities] if isinstance(quantities, str) else list(quantities)
        unknown = [q for q in quantities if q not in QUANTITY_KINDS]
        if unknown:
            raise ValueError(f"`quantities` has unknown names {unknown}; choose from {list(QUANTITY_ORDER)}")
    chars = list(chars) if chars is not None else None

    blobs: list[str] = []

    def add_blob(data: bytes) -> str:
        blob = pack(data)
        blob_id = f"b{len(blobs)}"
        deflated = ' data-deflated=""' if blob.deflated else ""
        blobs.append(f'<script type="application/octet-stream" id="{blob_id}"{deflated}>{blob.base64}</script>')
        return blob_id

    series = _check_inputs(inputs, traces)
    probes = [_probe(i, tr, chars, quantities, top_k, top_units, add_blob) for i, tr in enumerate(traces)]
    for probe, values in zip(probes, series, strict=True):
        if values is not None:
            probe["series"] = _series(values, add_blob)
    features = _features(feature_matches, probes)
    meta = {"step": step, "vocab": chars, "probes": probes, "features": features}
    if open_on is not None:
        try:  # checked like a feature match, and named as what it is
            meta["open"] = _features({"open_on": [open_on]}, probes)[0]["matches"][0]
        except ValueError as err:
            raise ValueError(str(err).replace("feature 'open_on'", "`open_on`")) from None

    template = _asset("template.html")
    subtitle = _subtitle(traces, step)
    fields = {
        "TITLE": html.escape(title),
        "SUBTITLE": html.escape(subtitle),
        "CSS": _asset("report.css"),
        "JS": _asset("report.js"),
        "META": _script_json(meta),
        "BLOBS": "\n".join(blobs),
    }
    # One pass over the template, so text inserted for one field is never scanned for another field's marker.
    page = re.sub(r"\{\{([A-Z]+)\}\}", lambda m: fields[m.group(1)], template)
    path = Path(path)
    atomic_write_text(path, page)
    return path


def _probe(
    index: int,
    tr: Trace,
    chars: list[str] | None,
    quantities: list[str] | None,
    top_k: int,
    top_units: int,
    add_blob: Callable[[bytes], str],
) -> dict[str, Any]:
    """The page's description of one trace; its arrays go through ``add_blob`` and are referred to by id."""
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
            ranked = most_variable_units(tr, q, top_units, layer=layer)
            entry["top"] = [[row.unit, round(row.variance, 5)] for row in ranked]
            entry["blob"] = add_blob(codes.numpy().tobytes())
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
