"""The live explorer's web app: one page and a small JSON API over a model (``create_app``).

Routes:

- ``GET /`` and ``GET /page.js``: the bundled page (no network assets, no files served from disk but these two);
- ``GET /api/info``: the model's layers, quantities, hidden size, vocabulary and the corpus lengths;
- ``POST /api/trace`` ``{"text", "layer", "quantity"}``: the display codes of every unit over the known characters
  (base64 of the (H, T) uint8 codes :func:`~lstm_interp.report._encode.display_codes` makes), the characters outside
  the vocabulary (skipped) and the top-5 next characters at each step;
- ``POST /api/select`` ``{"text", "span", "threshold", "before", "after", "layer"?, "quantity"?}``: LSTMVis's
  selection (:func:`~lstm_interp.select_cells`) over a span of the text's characters;
- ``POST /api/match`` ``{"cells", "top"}``: the corpus spans where those cells are on together, from a
  :class:`~lstm_interp.analysis.StateIndex` of each corpus built when the app is created.

Errors are JSON ``{"error": message}`` with status 400 (a bad value, named) or 413 (a body or text over the limit).
The server never writes text into HTML: the page builds its DOM with ``textContent`` only.
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lstm_interp.analysis import StateIndex, select_cells
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.report._encode import display_codes
from lstm_interp.tracing import Trace, trace
from lstm_interp.tracing.quantities import QUANTITY_KINDS, quantities_of, state_quantity

TOP_K = 5
# The page is served with this policy: scripts and requests only from this server, nothing inline but styles, so
# even a text that slipped into the DOM as markup could not run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class ApiError(Exception):
    """A request the API refuses: ``status`` (400 or 413) and a message naming the bad value."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Endpoint = Callable[[Request], Awaitable[Response]]


def _api(handler: Endpoint) -> Endpoint:
    """``handler`` with ApiError, ValueError and KeyError turned into a JSON error (a traceback helps no one)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        except (ValueError, KeyError) as err:
            # The library's checks (select_cells, StateIndex.match) name the bad value in their messages.
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            return JSONResponse({"error": str(message)}, status_code=400)

    return wrapped


def _bundled(name: str) -> str:
    return resources.files("lstm_interp.serve").joinpath(name).read_text(encoding="utf-8")


class _Explorer:
    """The model, its corpus indexes and the request checks, shared by every route."""

    def __init__(self, model: CharLSTM, corpus_texts: Sequence[str], max_body_bytes: int, max_text_chars: int) -> None:
        self.model = model.eval()
        self.vocab = model._require_vocab()
        cfg = model.config
        self.cell: str = cfg.cell
        self.layers = [f"layers.{i}" for i in range(cfg.num_layers)]
        self.quantities = list(quantities_of(cfg.cell))
        self.state_quantity = state_quantity(cfg.cell)
        self.hidden_size: int = cfg.hidden_size
        self.max_body_bytes, self.max_text_chars = max_body_bytes, max_text_chars
        # One trace at a time: tracing toggles the model's train/eval mode, and two at once on 2 cores only wait.
        self.lock = threading.Lock()
        self.corpus_lengths = [len(text) for text in corpus_texts]
        self.tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.indexes: list[StateIndex] = []
        if corpus_texts:
            self.tempdir = tempfile.TemporaryDirectory(prefix="lstm-interp-serve-")
            for i, text in enumerate(corpus_texts):
                # Corpora are the user's files: characters the model lacks are dropped rather than refused.
                self.indexes.append(
                    StateIndex.build(model, text, Path(self.tempdir.name) / f"corpus{i}", on_unknown="skip")
                )

    # ------------------------------------------------------------------ request checks
    async def read_json(self, request: Request) -> dict[str, Any]:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise ApiError(400, f"Content-Length must be a number of bytes, got {declared!r}") from None
            if size > limit:
                raise ApiError(413, f"the request body has {size} bytes; the limit is {limit} bytes")
        body = bytearray()
        # Counted while reading too: a chunked body has no Content-Length, and a client may lie about it.
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"the request body is over the limit of {limit} bytes")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ApiError(400, f"the request body is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
        return data

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
        layer = data.get("layer", default)
        if layer is None:
            return None
        if layer not in self.layers:
            raise ApiError(400, f"unknown layer {layer!r}; the model's layers are {self.layers}")
        return layer

    def quantity_of(self, data: dict[str, Any]) -> str:
        quantity = data.get("quantity", self.state_quantity)
        if quantity not in self.quantities:
            raise ApiError(400, f"unknown quantity {quantity!r}; a {self.cell} has {self.quantities}")
        return quantity

    @staticmethod
    def int_of(data: dict[str, Any], key: str, default: int, low: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ApiError(400, f"`{key}` must be an integer >= {low}, got {value!r}")
        return value

    # ------------------------------------------------------------------ work (in a worker thread)
    def trace_known(self, text: str, names: list[str]) -> tuple[list[int], Trace | None]:
        """The indices of ``text``'s unknown characters, and the trace of the others (None if there are none)."""
        unknown = [i for i, char in enumerate(text) if char not in self.vocab]
        known = "".join(char for char in text if char in self.vocab)
        if not known:
            return unknown, None
        with self.lock, torch.inference_mode():
            return unknown, trace(self.model, known, names_filter=names)

    def trace_response(self, text: str, layer: str, quantity: str) -> dict[str, Any]:
        started = time.perf_counter()
        name = f"{layer}.{quantity}"
        unknown, result = self.trace_known(text, [name, "log_probs"])
        values, top = "", []
        if result is not None:
            codes = display_codes(result[name], quantity)  # (H, T)
            values = base64.b64encode(codes.numpy().tobytes()).decode("ascii")
            probs, ids = result["log_probs"].to(torch.float32).exp().topk(min(TOP_K, len(self.vocab)), dim=-1)
            chars = self.vocab.chars
            top = [
                [[chars[i], round(p, 4)] for i, p in zip(row_ids, row_probs, strict=True)]
                for row_ids, row_probs in zip(ids.tolist(), probs.tolist(), strict=True)
            ]
        return {
            "chars": list(text),
            "unknown": unknown,
            "layer": layer,
            "quantity": quantity,
            "hidden_size": self.hidden_size,
            "steps": len(text) - len(unknown),
            "values": values,
            "top": top,
            "server_ms": (time.perf_counter() - started) * 1000,
        }

    def select_response(self, data: dict[str, Any]) -> dict[str, Any]:
        text = self.text_of(data)
        quantity = self.quantity_of(data)
        layer = self.layer_of(data, None)
        span = data.get("span")
        if (
            not isinstance(span, list)
            or len(span) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in span)
        ):
            raise ApiError(400, f"`span` must be [start, end], two character indices, got {span!r}")
        start, end = span
        if start >= end:
            raise ApiError(400, f"the selection {span} is empty: brush at least one character (end is exclusive)")
        if start < 0 or end > len(text):
            raise ApiError(400, f"the selection {span} lies outside the text's characters 0 .. {len(text)}")
        threshold = data.get("threshold", 0.3)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise ApiError(400, f"`threshold` must be a finite number, got {threshold!r}")
        before = self.int_of(data, "before", 1, 0)
        after = self.int_of(data, "after", 0, 0)
        # The span is in the text's characters; the trace has a step for each known one only.
        steps = [i for i, char in enumerate(text) if char in self.vocab]
        inside = [k for k, i in enumerate(steps) if start <= i < end]
        if not inside:
            raise ApiError(400, f"the selection {span} holds only characters outside the vocabulary: nothing to select")
        names = [f"{name}.{quantity}" for name in ([layer] if layer else self.layers)]
        _, result = self.trace_known(text, names)
        assert result is not None  # `inside` is not empty, so some character is known
        cells = select_cells(
            result, (inside[0], inside[-1] + 1), threshold, before, after, quantity=quantity, layer=layer
        )
        steps_span = [inside[0], inside[-1] + 1]
        return {"cells": [[name, unit] for name, unit in cells], "quantity": quantity, "steps": steps_span}

    def match_response(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self.indexes:
            raise ApiError(400, "no corpus to match in: start the server with --corpus FILE")
        cells = data.get("cells")
        if not isinstance(cells, list) or not cells:
            raise ApiError(400, f"`cells` is an empty selection: select cells first (got {cells!r})")
        pairs: list[tuple[str, int]] = []
        for cell in cells:
            if (
                not isinstance(cell, list)
                or len(cell) != 2
                or cell[0] not in self.layers
                or isinstance(cell[1], bool)
                or not isinstance(cell[1], int)
                or not 0 <= cell[1] < self.hidden_size
            ):
                raise ApiError(
                    400,
                    f"each cell must be [layer, unit] with a layer of {self.layers} and a unit "
                    f"0 .. {self.hidden_size - 1}, got {cell!r}",
                )
            pairs.append((cell[0], cell[1]))
        quantity = self.quantity_of(data)
        if quantity != self.state_quantity:
            raise ApiError(400, f"the corpora are indexed on {self.state_quantity!r}, not {quantity!r}")
        top = self.int_of(data, "top", 50, 1)
        context = self.int_of(data, "context", 40, 0)
        found = []
        for corpus, index in enumerate(self.indexes):
            for match in index.match(pairs, top):
                before, span, after = index.passage(match, context)
                found.append({
                    "corpus": corpus, "start": match.start, "end": match.end, "jaccard": match.jaccard,
                    "intersection": match.intersection, "union": match.union,
                    "before": before, "span": span, "after": after,
                })  # fmt: skip
        # The best of all corpora, by the index's own ranking: most selected cells on, then fewest others.
        found.sort(key=lambda m: (-m["intersection"], m["union"], -(m["end"] - m["start"]), m["corpus"], m["start"]))
        return {"matches": found[:top], "threshold": self.indexes[0].threshold}


def create_app(
    model: CharLSTM,
    *,
    corpus_texts: Sequence[str] = (),
    max_body_bytes: int = 100_000,
    max_text_chars: int = 5_000,
) -> Starlette:
    """The live explorer over ``model``: the page at ``/`` and the JSON API of the module docstring.

    Args:
        model: the network; its vocabulary decides which typed characters are traced.
        corpus_texts: texts to match selections in; each is indexed (:meth:`StateIndex.build`, at the default
            threshold, characters outside the vocabulary skipped) into a temporary folder kept for the app's life.
        max_body_bytes: the largest request body accepted (larger: 413).
        max_text_chars: the longest text traced (longer: 413, naming the limit).

    Raises:
        TypeError: ``model`` is not a CharLSTM.
        ValueError: a limit below 1, or a corpus the index cannot be built from (empty, or no known character).
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    for label, value in (("max_body_bytes", max_body_bytes), ("max_text_chars", max_text_chars)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{label}` must be a positive integer, got {value!r}")
    if isinstance(corpus_texts, str):
        raise TypeError("`corpus_texts` must be a sequence of texts, got one str (wrap it in a list)")
    explorer = _Explorer(model, list(corpus_texts), max_body_bytes, max_text_chars)
    page_html, page_js = _bundled("page.html"), _bundled("page.js")

    async def page(request: Request) -> Response:
        return Response(page_html, media_type="text/html; charset=utf-8", headers=_SECURITY_HEADERS)

    async def script(request: Request) -> Response:
        return Response(page_js, media_type="text/javascript; charset=utf-8", headers=_SECURITY_HEADERS)

    async def info(request: Request) -> Response:
        return JSONResponse({
            "cell": explorer.cell, "layers": explorer.layers, "quantities": explorer.quantities,
            "state_quantity": explorer.state_quantity,
            "kinds": {q: QUANTITY_KINDS[q] for q in explorer.quantities}, "hidden_size": explorer.hidden_size,
            "vocab": explorer.vocab.chars, "corpora": explorer.corpus_lengths,
            "max_text_chars": max_text_chars, "max_body_bytes": max_body_bytes,
        })  # fmt: skip

    @_api
    async def trace_route(request: Request) -> Response:
        data = await explorer.read_json(request)
        text = explorer.text_of(data)
        layer = explorer.layer_of(data, explorer.layers[-1])
        assert layer is not None
        quantity = explorer.quantity_of(data)
        return JSONResponse(await run_in_threadpool(explorer.trace_response, text, layer, quantity))

    @_api
    async def select_route(request: Request) -> Response:
        data = await explorer.read_json(request)
        return JSONResponse(await run_in_threadpool(explorer.select_response, data))

    @_api
    async def match_route(request: Request) -> Response:
        data = await explorer.read_json(request)
        return JSONResponse(await run_in_threadpool(explorer.match_response, data))

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/page.js", script, methods=["GET"]),
        Route("/api/info", info, methods=["GET"]),
        Route("/api/trace", trace_route, methods=["POST"]),
        Route("/api/select", select_route, methods=["POST"]),
        Route("/api/match", match_route, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    # Kept on the app so that the temporary index folders live exactly as long as it does.
    app.state.explorer = explorer
    return app
