"""``RequestFields``: the checks of every field a request of the live explorer sends, each naming the field, the
value and what was expected (:class:`~lstm_interp.serve.api_error.ApiError`).

They read only what the model and its corpora are (layers, quantities, hidden size, vocabulary, thresholds), never
run it, so the app runs them on its event loop, before a request is queued: a bad request, or one over the cost
limit (:mod:`~lstm_interp.serve.cost`), is refused at once even while the model is busy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lstm_interp.analysis import StateIndex
from lstm_interp.interventions import Ablate, Clamp, Intervention, InterventionError, Scale
from lstm_interp.serve.api_error import ApiError
from lstm_interp.vocab import CharVocab

MAX_INTERVENTIONS = 32
INTERVENTION_OPS = ("ablate", "clamp", "scale")


def _number(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"{label} must be a finite number, got {value!r}")
    return float(value)


class RequestFields:
    """The field checks, over what :class:`~lstm_interp.serve.explorer.Explorer` sets up: ``layers``,
    ``quantities``, ``state_quantity``, ``cell``, ``hidden_size``, ``vocab``, ``max_text_chars``, ``thresholds``
    and ``indexes``."""

    cell: str
    layers: list[str]
    quantities: list[str]
    state_quantity: str
    hidden_size: int
    vocab: CharVocab
    max_text_chars: int
    thresholds: list[float]
    indexes: list[dict[float, StateIndex]]

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
            try:  # the library's rules (a gate's range, the factor's range) are the API's: one rule for both
                if op == "ablate":
                    built.append(Ablate(name, checked, steps=steps))
                elif op == "clamp":
                    built.append(Clamp(name, checked, _number(spec.get("value"), f"{where}: `value`"), steps=steps))
                else:
                    built.append(Scale(name, checked, _number(spec.get("factor"), f"{where}: `factor`"), steps=steps))
            except InterventionError as err:
                raise ApiError(400, f"{where}: {err}") from None
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
        # The vocabulary's own set difference says in C whether any character is unknown: a Python test per
        # character was a few milliseconds of every keystroke at 5,000 characters, and most texts have none.
        missing = self.vocab.unknown_chars(text)
        if not missing:
            return [], text
        unknown = [i for i, char in enumerate(text) if char in missing]
        return unknown, "".join(char for char in text if char not in missing)


def suspect(specs: list[Any], interventions: Sequence[Intervention]) -> str:
    """A sentence naming the intervention of ``specs`` (the request's, already checked and built as
    ``interventions``) likeliest to have driven a run out of float32's range: the clamp or scale of the largest
    magnitude (an ablation sets units to 0, which overflows nothing)."""
    sized = [
        (abs(iv.value if isinstance(iv, Clamp) else iv.factor), i)  # type: ignore[attr-defined]
        for i, iv in enumerate(interventions)
        if isinstance(iv, Clamp | Scale)
    ]
    if not sized:
        return "the model's own numbers overflow under these ablations; no value of the request can change that"
    _, i = max(sized)
    spec = specs[i]
    field, value = ("value", spec["value"]) if spec["op"] == "clamp" else ("factor", spec["factor"])
    which = "" if len(interventions) == 1 else f", the largest of the {len(sized)} clamps and scales,"
    return (
        f"interventions[{i}] ({spec['op']} {spec['name']} units {spec['units']!r:.80} with `{field}` {value!r}){which} "
        f"drives the model's numbers out of float32's range; send a `{field}` of smaller magnitude"
    )
