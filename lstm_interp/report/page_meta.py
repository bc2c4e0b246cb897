"""The report page's metadata: the JSON that ``report.js`` reads, one entry per probe, feature and input series.

:func:`~lstm_interp.report.html_report.write_html_report` builds it from its arguments here, checking each against
the traces (every message names the trace, layer or unit at fault), and keeps the bytes out of it: predictions and
input series go through the writer's ``add_blob`` and are named by blob id, activation codes are handed back as
:class:`~lstm_interp.report.page_budget.ShownQuantity` until the page's size budget has chosen which units to embed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lstm_interp.report._encode import display_codes, top_predictions
from lstm_interp.report.page_budget import ShownQuantity
from lstm_interp.tracing import QUANTITY_KINDS, QUANTITY_ORDER, Trace, most_variable_units

FeatureMatches = Mapping[str, Sequence[Mapping[str, Any]]]
# Characters shown when a trace has no text and no vocabulary is given (a trace of a foreign module, say).
_PLACEHOLDER = "\u00b7"
_PROBE_LABEL_CHARS = 40


def probe_entry(
    index: int,
    tr: Trace,
    chars: list[str] | None,
    quantities: list[str] | None,
    top_k: int,
    add_blob: Callable[[bytes], str],
    shown_out: list[ShownQuantity],
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
            shown_out.append(ShownQuantity(layer, entry, codes.numpy(), ranking))
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


def feature_entries(
    feature_matches: FeatureMatches | None, probes: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
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
            layer, unit, probe = match.get("layer"), as_int(match.get("unit")), match.get("probe")
            if layer not in units:
                raise ValueError(f"feature {feature!r} names layer {layer!r}; the report has {list(units)}")
            if unit is None or not 0 <= unit < units[layer]:
                raise ValueError(
                    f"feature {feature!r} names unit {match.get('unit')!r} of {layer!r}, which has {units[layer]} units"
                )
            if probe is not None and not (as_int(probe) is not None and 0 <= probe < len(probes)):
                raise ValueError(f"feature {feature!r} names probe {probe!r}; the report has {len(probes)} probes")
            row: dict[str, Any] = {"layer": layer, "unit": unit}
            if match.get("quantity") is not None:
                row["quantity"] = str(match["quantity"])
            if probe is not None:
                row["probe"] = int(probe)
            for key in ("score", "sign"):
                if match.get(key) is not None:
                    row[key] = float(match[key])
            # How far the unit's colour moves with the feature, and whether that shows (CellScore.visible): the page
            # marks a match that would draw a flat band.
            if match.get("effect") is not None and math.isfinite(float(match["effect"])):
                row["effect"] = float(match["effect"])
            if match.get("visible") is not None:
                row["visible"] = bool(match["visible"])
            rows.append(row)
        features.append({"name": str(feature), "matches": rows})
    return features


def as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer of any kind (numpy and 0-d torch included), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def input_arrays(inputs: Sequence[Any] | None, traces: list[Trace]) -> list[np.ndarray | None]:
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


def series_entry(values: np.ndarray, add_blob: Callable[[bytes], str]) -> dict[str, Any]:
    """The page's description of a probe's input channels: each quantised to 8 bits between its own min and max."""
    x = np.nan_to_num(values.astype(np.float64))
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    codes = np.round((x - lo) / span * 255).astype(np.uint8).T.copy()  # (C, T): one channel contiguous
    return {"channels": int(x.shape[1]), "min": lo.tolist(), "max": hi.tolist(), "blob": add_blob(codes.tobytes())}
