"""``Explorer``: the live explorer's work behind each route of :func:`~lstm_interp.serve.app.create_app`.

Each method takes a request's decoded JSON, checks every field it reads (raising :class:`ApiError`, which names the
field, the value and what was expected), and returns the response's JSON. They run in a worker thread; tracing is
serialised by one lock, since a trace sets the model's eval mode and two at once on a few cores only wait.

Steps and characters: the typed text may hold characters outside the vocabulary. They are kept in the response (and
marked on the page) but not traced, so the trace has a step for each *known* character; spans in requests are in
the text's characters and are mapped to steps here.

The feature list follows :func:`~lstm_interp.find_cells`'s ranking rule: each feature's units in the order it returns
them (units that visibly switch first), and the features ordered by their first unit
(:func:`~lstm_interp.analysis.find_cells.row_rank`), so the panel never leads with a unit whose picture is one
flat band while one that switches exists.
"""

from __future__ import annotations

import base64
import math
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_interp.analysis import Match, StateIndex, find_cells, select_cells
from lstm_interp.analysis.control_scores import usable_controls
from lstm_interp.analysis.find_cells import row_rank
from lstm_interp.features import FEATURES, ConstantFeatureError, feature_values
from lstm_interp.interventions import Ablate, Clamp, Intervention, Scale, run_with_interventions
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.report._encode import display_codes
from lstm_interp.tracing import Trace, trace
from lstm_interp.tracing.quantities import QUANTITY_KINDS, quantities_of, state_quantity

TOP_K = 5
MAX_INTERVENTIONS = 32
PATTERN_CELLS = 32  # selected cells whose on/off rows a match carries (the count of cells on covers them all)
INTERVENTION_OPS = ("ablate", "clamp", "scale")


class ApiError(Exception):
    """A request the API refuses: ``status`` (400 or 413) and a message naming the bad value."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _number(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"{label} must be a finite number, got {value!r}")
    return float(value)


class Explorer:
    """The model, its corpus indexes (one per corpus and threshold) and the work of every route.

    Args:
        model: the network.
        corpora: what to match in, each a text (``str``) or a UTF-8 file (``Path``, streamed), indexed at every one
            of ``thresholds`` (characters the model does not know are skipped).
        thresholds: the thresholds θ the corpora are indexed at; a match at another θ is refused, naming these.
        max_text_chars: the longest text traced.
    """

    def __init__(
        self, model: CharLSTM, corpora: Sequence[str | Path], thresholds: Sequence[float], max_text_chars: int
    ) -> None:
        self.model = model.eval()
        self.vocab = model._require_vocab()
        cfg = model.config
        self.cell: str = cfg.cell
        self.layers = [f"layers.{i}" for i in range(cfg.num_layers)]
        self.quantities = list(quantities_of(cfg.cell))
        self.state_quantity = state_quantity(cfg.cell)
        self.hidden_size: int = cfg.hidden_size
        self.max_text_chars = max_text_chars
        self.thresholds = [float(t) for t in thresholds]
        self.lock = threading.Lock()
        self.tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.indexes: list[dict[float, StateIndex]] = []
        self.corpora = list(corpora)  # the first one is where the page opens (lstm_interp.serve.opening)
        self.corpus_names = [f"corpus {i}" if isinstance(c, str) else Path(c).name for i, c in enumerate(corpora)]
        if corpora:
            self.tempdir = tempfile.TemporaryDirectory(prefix="lstm-interp-serve-")
            for i, text in enumerate(corpora):
                self.indexes.append({
                    theta: StateIndex.build(
                        model, text, Path(self.tempdir.name) / f"corpus{i}-{j}", threshold=theta, on_unknown="skip"
                    )
                    for j, theta in enumerate(self.thresholds)
                })  # fmt: skip

    def info(self) -> dict[str, Any]:
        return {
            "cell": self.cell, "layers": self.layers, "quantities": self.quantities,
            "state_quantity": self.state_quantity, "kinds": {q: QUANTITY_KINDS[q] for q in self.quantities},
            "hidden_size": self.hidden_size, "vocab": self.vocab.chars, "corpora": self.corpus_names,
            "corpus_steps": [len(next(iter(indexes.values()))) for indexes in self.indexes],
            "thresholds": self.thresholds, "features": list(FEATURES), "max_text_chars": self.max_text_chars,
            "intervention_ops": list(INTERVENTION_OPS), "max_interventions": MAX_INTERVENTIONS,
        }  # fmt: skip

    # ------------------------------------------------------------------ field checks
    def text_of(self, data: dict[str, Any]) -> str:
        text = data.get("text")
        if not isinstance(text, str):
            raise ApiError(400, f"`text` must be a string, got {type(text).__name__}")
        if not text:
            raise ApiError(400, "`text` is empty: type some text to trace")
        if len(text) > self.max_text_chars:
            raise ApiError(413, f"`text` has {len(text)} characters; the limit is {self.max_text_chars} characters")
        return text

    def layer_of(self, data: dict[str, Any], default: str | None) -> str | None:
        """``layer``; omitted or ``null``, ``default`` (a trace's is the last layer; a selection's, every layer)."""
        layer = data.get("layer")
        if layer is None:  # null as omitted: a trace of layer "None" would fail deep in the tracer, naming no field
            return default
        if layer not in self.layers:
            raise ApiError(400, f"unknown layer {layer!r}; the model's layers are {self.layers}")
        return layer

    def quantity_of(self, data: dict[str, Any]) -> str:
        quantity = data.get("quantity", self.state_quantity)
        if quantity not in self.quantities:
            raise ApiError(400, f"unknown quantity {quantity!r}; a {self.cell} has {self.quantities}")
        return quantity

    @staticmethod
    def int_of(data: dict[str, Any], key: str, default: int, low: int, high: int | None = None) -> int:
        value = data.get(key, default)
        bad = isinstance(value, bool) or not isinstance(value, int) or value < low
        if bad or (high is not None and value > high):
            expected = f"an integer {low} .. {high}" if high is not None else f"an integer >= {low}"
            raise ApiError(400, f"`{key}` must be {expected}, got {value!r}")
        return value

    def unit_of(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.hidden_size:
            raise ApiError(400, f"{where}: a unit must be an integer 0 .. {self.hidden_size - 1}, got {value!r}")
        return value

    def span_of(self, data: dict[str, Any], length: int, what: str, where: str = "") -> tuple[int, int]:
        """``data["span"]``, checked to be a non-empty ``[start, end)`` of ``what``'s ``length`` characters."""
        span, said = data.get("span"), f"{where}: " if where else ""
        integers = isinstance(span, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
        if not integers or len(span) != 2:
            raise ApiError(400, f"{said}`span` must be [start, end], two character indices, got {span!r:.100}")
        start, end = span
        if start >= end:
            raise ApiError(400, f"{said}the selection {span} is empty: brush at least one character (end is exclusive)")
        if start < 0 or end > length:
            raise ApiError(400, f"{said}the selection {span} lies outside {what}'s characters 0 .. {length}")
        return start, end

    def indexed_threshold(self, data: dict[str, Any]) -> float:
        """``threshold`` (default: the first indexed one), checked to be one the corpora are indexed at."""
        if not self.indexes:
            raise ApiError(400, "no corpus to match in: start the server with --corpus FILE")
        theta = _number(data.get("threshold", self.thresholds[0]), "`threshold`")
        if theta not in self.thresholds:
            raise ApiError(
                400,
                f"the corpora are indexed at threshold {self.thresholds}, not {theta!r}: matching needs the same "
                f"threshold; start the server with --threshold {theta:g} to match at it",
            )
        return theta

    def indexed_quantity(self, data: dict[str, Any]) -> str:
        """``quantity``, checked to be the one the corpora are indexed on (the state quantity)."""
        quantity = self.quantity_of(data)
        if quantity != self.state_quantity:
            raise ApiError(400, f"the corpora are indexed on {self.state_quantity!r}, not {quantity!r}")
        return quantity

    def interventions_of(self, data: dict[str, Any], text: str) -> list[Intervention]:
        """``interventions``: ``[{"op": "ablate"|"clamp"|"scale", "name", "units", "value"?, "factor"?, "span"?}]``.

        ``span``, ``[start, end)`` in ``text``'s characters, limits one to the steps of the known characters in it
        (every step without it).
        """
        given = data.get("interventions", [])
        if not isinstance(given, list) or len(given) > MAX_INTERVENTIONS:
            raise ApiError(400, f"`interventions` must be a list of at most {MAX_INTERVENTIONS}, got {given!r:.200}")
        built: list[Intervention] = []
        for i, spec in enumerate(given):
            where = f"interventions[{i}]"
            if not isinstance(spec, dict):
                raise ApiError(400, f"{where} must be an object, got {spec!r:.200}")
            op, name, units = spec.get("op"), spec.get("name"), spec.get("units")
            if op not in INTERVENTION_OPS:
                raise ApiError(400, f"{where}: `op` must be one of {list(INTERVENTION_OPS)}, got {op!r}")
            layer, _, quantity = name.rpartition(".") if isinstance(name, str) else ("", "", "")
            if layer not in self.layers or quantity not in self.quantities:
                per_layer = f"{self.layers[0]}.{self.state_quantity}"
                raise ApiError(400, f"{where}: unknown `name` {name!r}; expected a layer.quantity like {per_layer!r}")
            if not isinstance(units, list) or not units:
                raise ApiError(400, f"{where}: `units` must be a non-empty list of units, got {units!r:.200}")
            checked = [self.unit_of(u, where) for u in units]
            steps = None
            if "span" in spec:
                start, end = self.span_of(spec, len(text), "the text", where)
                steps = slice(*self.steps_in(text, start, end, f"{where}: "))
            if op == "ablate":
                built.append(Ablate(name, checked, steps=steps))
            elif op == "clamp":
                value = _number(spec.get("value"), f"{where}: `value`")
                if QUANTITY_KINDS[quantity] == "gate" and not 0.0 <= value <= 1.0:
                    raise ApiError(400, f"{where}: {quantity!r} is a sigmoid gate; clamp it to 0..1, not {value!r}")
                built.append(Clamp(name, checked, value, steps=steps))
            else:
                built.append(Scale(name, checked, _number(spec.get("factor"), f"{where}: `factor`"), steps=steps))
        return built

    def steps_in(self, text: str, start: int, end: int, where: str) -> tuple[int, int]:
        """The trace steps ``[first, last + 1)`` of the known characters in ``text[start:end]``.

        The trace has a step for each character of the vocabulary only, so spans of the text are mapped here.
        """
        known = [k for k, i in enumerate(i for i, char in enumerate(text) if char in self.vocab) if start <= i < end]
        if not known:
            raise ApiError(400, f"{where}the selection {[start, end]} holds only characters outside the vocabulary")
        return known[0], known[-1] + 1

    def known(self, text: str) -> tuple[list[int], str]:
        """The indices of ``text``'s characters outside the vocabulary, and the text of the others."""
        unknown = [i for i, char in enumerate(text) if char not in self.vocab]
        return unknown, "".join(char for char in text if char in self.vocab)

    def run(self, known: str, names: list[str], interventions: Sequence[Intervention] = ()) -> Trace:
        with self.lock, torch.inference_mode():
            if interventions:
                return run_with_interventions(self.model, known, interventions, names_filter=names)
            return trace(self.model, known, names_filter=names)

    def trace_response(self, data: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        text = self.text_of(data)
        layer = self.layer_of(data, self.layers[-1])
        quantity = self.quantity_of(data)
        interventions = self.interventions_of(data, text)
        name = f"{layer}.{quantity}"
        unknown, known = self.known(text)
        response: dict[str, Any] = {
            "chars": list(text), "unknown": unknown, "unknown_chars": sorted({text[i] for i in unknown}),
            "layer": layer, "quantity": quantity,
            "hidden_size": self.hidden_size, "steps": len(known), "values": "", "top": [], "loss": None,
            "interventions": len(interventions),
        }  # fmt: skip
        if known:
            result = self.run(known, [name, "log_probs"], interventions)
            codes = display_codes(result[name], quantity)  # (H, T)
            response["values"] = base64.b64encode(codes.numpy().tobytes()).decode("ascii")
            ids = self.vocab.encode(known)
            response["top"], response["loss"] = self._predictions(result["log_probs"], ids)
            if interventions:  # the same text without them, so the page can show what the interventions changed
                plain = self.run(known, ["log_probs"])
                response["base_top"], response["base_loss"] = self._predictions(plain["log_probs"], ids)
        response["server_ms"] = (time.perf_counter() - started) * 1000
        return response

    def _predictions(self, log_probs: torch.Tensor, ids: torch.Tensor) -> tuple[list[list[Any]], float | None]:
        """The top-5 next characters at each step, and the mean loss in nats of predicting each next character."""
        log_probs = log_probs.to(torch.float32)  # (T, V)
        probs, top_ids = log_probs.exp().topk(min(TOP_K, len(self.vocab)), dim=-1)
        chars = self.vocab.chars
        top = [
            [[chars[i], round(p, 4)] for i, p in zip(row_ids, row_probs, strict=True)]
            for row_ids, row_probs in zip(top_ids.tolist(), probs.tolist(), strict=True)
        ]
        if len(ids) < 2:
            return top, None
        loss = -log_probs[:-1].gather(1, ids[1:, None].long()).mean().item()
        return top, round(loss, 5)

    def features_response(self, data: dict[str, Any]) -> dict[str, Any]:
        """For each registered feature that varies on the text, the ``top`` units that track it best."""
        text = self.text_of(data)
        quantity = self.quantity_of(data)
        top = self.int_of(data, "top", 3, 1, 20)
        _, known = self.known(text)
        if len(known) < 2:
            return {"features": [], "constant": list(FEATURES), "quantity": quantity}
        result = self.run(known, [f"{layer}.{quantity}" for layer in self.layers])
        rows, constant = self.feature_rows(result, known, quantity, top)
        return {"features": rows, "constant": constant, "quantity": quantity}

    def feature_rows(
        self, result: Trace, known: str, quantity: str, top: int
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Per registered feature that varies on ``known`` (traced as ``result``), its ``top`` units in find_cells's
        order, scored against its usable controls; the features in :func:`~lstm_interp.analysis.find_cells.row_rank`
        order. Also the names of the
        features constant on ``known``."""
        rows, constant = [], []
        for feature in FEATURES.values():
            try:
                values = feature_values(feature, known)
            except ConstantFeatureError:
                constant.append(feature.name)
                continue
            controls, _ = usable_controls(feature, values, known)
            table = find_cells(result, values, quantity, top, kind=feature.kind, label=feature.name, controls=controls)
            units = [row.to_dict() | {"strength": row.strength} for row in table.rows]
            rows.append({
                "feature": feature.name, "kind": feature.kind, "metric": table.rows[0].metric,
                "controls": list(controls), "units": units,
            })  # fmt: skip
        rows.sort(key=lambda row: row_rank(row["units"][0]))
        return rows, constant

    def select_response(self, data: dict[str, Any]) -> dict[str, Any]:
        """LSTMVis's selection over a span of the typed text (``text``) or of a corpus (``corpus``)."""
        quantity = self.quantity_of(data)
        layer = self.layer_of(data, None)
        before = self.int_of(data, "before", 1, 0)
        after = self.int_of(data, "after", 0, 0)
        if "corpus" in data:  # a span of a corpus passage: read from its index, so at the index's threshold
            quantity, theta = self.indexed_quantity(data), self.indexed_threshold(data)
            corpus = self.int_of(data, "corpus", 0, 0, len(self.indexes) - 1)
            index = self.indexes[corpus][theta]
            start, end = self.span_of(data, len(index), f"corpus {corpus}")
            cells = index.select((start, end), before, after, layer=layer)
            return {"cells": [list(c) for c in cells], "quantity": quantity, "steps": [start, end], "corpus": corpus}
        text = self.text_of(data)
        start, end = self.span_of(data, len(text), "the text")
        threshold = _number(data.get("threshold", 0.3), "`threshold`")
        span = self.steps_in(text, start, end, "")
        _, known = self.known(text)
        result = self.run(known, [f"{name}.{quantity}" for name in ([layer] if layer else self.layers)])
        cells = select_cells(result, span, threshold, before, after, quantity=quantity, layer=layer)
        return {"cells": [list(c) for c in cells], "quantity": quantity, "steps": list(span)}

    def match_response(self, data: dict[str, Any]) -> dict[str, Any]:
        """The corpus spans where the ``cells`` are on together, ranked, each with its passage and cells' pattern."""
        if not self.indexes:
            raise ApiError(400, "no corpus to match in: start the server with --corpus FILE")
        cells = data.get("cells")
        if not isinstance(cells, list):  # a string is not an empty selection: say what is expected (issue 21)
            raise ApiError(
                400, f'`cells` must be a list of [layer, unit] pairs, e.g. [["layers.1", 37]], got {cells!r:.200}'
            )
        if not cells:
            raise ApiError(400, f"`cells` is an empty selection: select cells first (got {cells!r:.200})")
        pairs: list[tuple[str, int]] = []
        for cell in cells:
            if not isinstance(cell, list) or len(cell) != 2 or cell[0] not in self.layers:
                raise ApiError(400, f"each cell must be [layer, unit] with a layer of {self.layers}, got {cell!r:.200}")
            pairs.append((cell[0], self.unit_of(cell[1], f"cell {cell!r}")))
        pairs = list(dict.fromkeys(pairs))
        self.indexed_quantity(data)
        top = self.int_of(data, "top", 50, 1, 1000)
        context = self.int_of(data, "context", 40, 0, 1000)
        theta = self.indexed_threshold(data)
        found = [
            (corpus, indexes[theta], match)
            for corpus, indexes in enumerate(self.indexes)
            for match in indexes[theta].match(pairs, top)
        ]
        # The best of all corpora, by the index's own ranking: most selected cells on, then fewest others.
        found.sort(key=lambda f: (-f[2].intersection, f[2].union, -f[2].length, f[0], f[2].start))
        shown = pairs[:PATTERN_CELLS]
        matches = [self._match_json(corpus, index, match, shown, context) for corpus, index, match in found[:top]]
        return {"matches": matches, "threshold": theta, "pattern_cells": [list(c) for c in shown]}

    def _match_json(
        self, corpus: int, index: StateIndex, match: Match, cells: list[tuple[str, int]], context: int
    ) -> dict[str, Any]:
        before, span, after = index.passage(match, context)
        offset, stop = match.start - len(before), match.end + len(after)
        rows = [index.bits(f"{layer}.{self.state_quantity}", [unit], offset, stop)[0] for layer, unit in cells]
        return {
            "corpus": corpus, "start": match.start, "end": match.end, "offset": offset, "jaccard": match.jaccard,
            "intersection": match.intersection, "union": match.union, "before": before, "span": span, "after": after,
            # One string per shown cell (the order of "pattern_cells"): "1" where it is on at that passage step.
            "pattern": ["".join(np.where(row, "1", "0")) for row in rows],
        }  # fmt: skip
