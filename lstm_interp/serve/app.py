"""The live explorer's web app: one page and a small JSON API over a model (``create_app``).

Routes (the work of each is :class:`~lstm_interp.serve.explorer.Explorer`'s):

- ``GET /``, ``GET /page.js`` and ``GET /colours.js``: the bundled page and its scripts (the colour scale is the
  static report's own ``colours.js``); no other file is served;
- ``GET /api/info``: the model's layers, quantities, hidden size, vocabulary, features, the corpus lengths and the
  thresholds they are indexed at;
- ``GET /api/initial``: what the page opens on (:mod:`~lstm_interp.serve.opening`): a passage of the first corpus
  where a feature changes most, or a probe text, and the layer, quantity and unit that track a feature of it best
  (the first unit of the page's feature list); worked out once, on the model's thread, as the server starts;
- ``POST /api/trace`` ``{"text", "layer", "quantity", "interventions"?}``: the display codes of every unit over the
  known characters (base64 of the (H, T) uint8 codes :func:`~lstm_interp.report._encode.display_codes` makes), the
  characters outside the vocabulary (skipped), the top-5 next characters at each step and the mean loss; with
  ``interventions`` (``[{"op": "ablate"|"clamp"|"scale", "name": "layers.1.cell", "units": [3], "value"?,
  "factor"?}]``) all of these are of the intervened run, and ``base_top``/``base_loss`` are those without;
- ``POST /api/features`` ``{"text", "quantity", "top"?}``: per registered feature that varies on the text, the units
  that track it best in :func:`~lstm_interp.find_cells`'s order (units that visibly switch first), the features
  ordered by their first unit (:func:`~lstm_interp.analysis.find_cells.row_rank`);
- ``POST /api/select`` ``{"text", "span", "threshold", "before", "after", "layer"?, "quantity"?}``: LSTMVis's
  selection (:func:`~lstm_interp.select_cells`) over a span of the text's characters; with ``{"corpus": i, "span",
  "threshold"?, ...}`` instead of ``text``, over a span of corpus ``i``, read from its index
  (:meth:`~lstm_interp.analysis.StateIndex.select`);
- ``POST /api/match`` ``{"cells", "top", "threshold"?, "context"?}``: the corpus spans where those cells are on
  together, from the :class:`~lstm_interp.analysis.StateIndex` of each corpus at that threshold, each with its
  passage and the on/off pattern of the selected cells over it.

Errors are JSON ``{"error": message}`` with status 400 (a bad value, named) or 413 (a body or text over the limit).
Every route, field, default and limit is in ``docs/explorer_api.md``.
The server never writes text into HTML: the page builds its DOM with ``textContent`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lstm_interp.analysis.select_cells import check_threshold
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.serve.explorer import ApiError, Explorer
from lstm_interp.serve.opening import initial_state
from lstm_interp.tracing.quantities import state_quantity

# The page is served with this policy: scripts and requests only from this server, nothing inline but styles, so
# even a text that slipped into the DOM as markup could not run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The names a browser can reach a loopback-bound server by (IPv6 literals keep their brackets in a Host header).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


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


def _bundled(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host header names a server bound to ``host`` accepts: the address itself (an IPv6 one in brackets, as a
    Host header writes it), the loopback names when it is loopback, and ``extra``."""
    names = [f"[{host}]" if ":" in host else host]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        loopback = host == "localhost"
    if loopback:
        names += LOOPBACK_HOSTS
    return list(dict.fromkeys([*names, *extra]))


def check_cross_site(request: Request) -> None:
    """Refuse what a page of another site can send without a CORS preflight (issue 21).

    A cross-site ``text/plain`` or form POST needs no preflight, so the media type must be ``application/json``
    (415 otherwise), and a browser's ``Origin`` must be this server's own (403 otherwise). A request without an
    ``Origin`` (curl, scripts) is not a browser's cross-site request and is let through.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        shown = media or "none"
        raise ApiError(415, f"the request body must be sent as Content-Type: application/json, got {shown}")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin.lower() != own.lower():
        raise ApiError(403, f"cross-origin request refused: Origin {origin!r} is not this server's {own!r}")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, refused (413) as soon as it is over ``limit`` bytes, however it is sent."""
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
    except RecursionError:  # "[[[[...]]]]" thousands deep: Python's parser gives up (issue 21)
        raise ApiError(400, "the request body is JSON nested too deeply; the API takes flat objects") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def create_app(
    model: CharLSTM,
    *,
    corpus_texts: Sequence[str] = (),
    corpus_files: Sequence[str | os.PathLike] = (),
    thresholds: Sequence[float] = (0.3,),
    max_body_bytes: int = 100_000,
    max_text_chars: int = 5_000,
    executor: Executor | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> Starlette:
    """The live explorer over ``model``: the page at ``/`` and the JSON API of the module docstring.

    Args:
        model: the network; its vocabulary decides which typed characters are traced.
        corpus_texts: texts to match selections in; each is indexed (:meth:`StateIndex.build`, characters outside
            the vocabulary skipped) into a temporary folder kept for the app's life.
        corpus_files: UTF-8 files to match in, indexed the same way after the texts; they are streamed, never read
            whole, so a corpus larger than memory works.
        thresholds: the thresholds θ each corpus is indexed at (LSTMVis's default 0.3); a match is made at one of
            them, and one at another θ is refused, naming these.
        max_body_bytes: the largest request body accepted (larger: 413).
        max_text_chars: the longest text traced (longer: 413, naming the limit).
        executor: where the model runs: the indexes are built and every request's work is done on it, in turn.
            Default: a new one-thread executor. Torch computes fastest when all its work stays on one thread: a
            second thread gets a second OpenMP team, and the two share the cores (a 500-character trace of the
            novel model took 1.5-1.7x as long on a second thread of a process whose main thread had loaded the
            model). So load the model on the executor too, as ``lstm-interp serve`` does:
            ``model = executor.submit(load_pretrained, "novel").result()``.
        allowed_hosts: the names a request's ``Host`` header may carry (Starlette's ``TrustedHostMiddleware``;
            others get 400), which stops DNS rebinding: a page of ``evil.example`` whose name is made to point at
            127.0.0.1 still sends ``Host: evil.example``. Default: the loopback names. ``lstm-interp serve`` passes
            the address it is bound to, plus its ``--allow-host`` names.

    Raises:
        TypeError: ``model`` is not a CharLSTM, or ``corpus_texts`` is one ``str``.
        FileNotFoundError: a corpus file is missing.
        ValueError: no ``allowed_hosts``, a limit below 1, no or repeated thresholds or one that is not finite, or a
            corpus the index cannot be built from (empty, not UTF-8, or no known character).

    Example::

        >>> import uvicorn  # doctest: +SKIP
        >>> app = create_app(load_pretrained("novel"), corpus_texts=[open("chapter1.txt").read()])  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    for label, value in (("max_body_bytes", max_body_bytes), ("max_text_chars", max_text_chars)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{label}` must be a positive integer, got {value!r}")
    if isinstance(corpus_texts, str):
        raise TypeError("`corpus_texts` must be a sequence of texts, got one str (wrap it in a list)")
    hosts = [] if isinstance(allowed_hosts, str) else list(allowed_hosts)
    if not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ValueError(f"`allowed_hosts` must be a non-empty list of host names, got {allowed_hosts!r}")
    if isinstance(thresholds, int | float) or not thresholds:
        raise ValueError(f"`thresholds` must be a non-empty list of numbers, got {thresholds!r}")
    thresholds = [check_threshold(t, state_quantity(model.config.cell)) for t in thresholds]
    if len(set(thresholds)) != len(thresholds):
        raise ValueError(f"`thresholds` must be one or more distinct numbers, got {thresholds!r}")
    files = [Path(f) for f in corpus_files]
    # Every request's work runs on this one thread, in turn (see `executor` above).
    worker = executor if executor is not None else ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstm-interp")
    explorer = worker.submit(Explorer, model, [*corpus_texts, *files], thresholds, max_text_chars).result()
    # Queued now, not awaited: it runs on the model's thread before any request's work, and the server starts at
    # once (with the 2x512 models and a corpus it takes a few seconds on 2 cores; the page waits for it, not the
    # start-up).
    opening = worker.submit(initial_state, explorer)
    assets = {
        "/": (_bundled("lstm_interp.serve", "page.html"), "text/html"),
        "/page.js": (_bundled("lstm_interp.serve", "page.js"), "text/javascript"),
        "/colours.js": (_bundled("lstm_interp.report", "colours.js"), "text/javascript"),
    }

    async def asset(request: Request) -> Response:
        body, media = assets[request.url.path]
        return Response(body, media_type=f"{media}; charset=utf-8", headers=_SECURITY_HEADERS)

    async def info(request: Request) -> Response:
        return JSONResponse(explorer.info() | {"max_body_bytes": max_body_bytes})

    async def initial(request: Request) -> Response:
        try:
            return JSONResponse(await asyncio.wrap_future(opening))
        except Exception as err:  # the server's own failure, not the request's: say what failed, keep serving
            message = f"the opening passage could not be worked out: {type(err).__name__}: {err}"
            return JSONResponse({"error": message}, status_code=500)

    def post(work: Callable[[dict[str, Any]], dict[str, Any]]) -> Endpoint:
        @_api
        async def endpoint(request: Request) -> Response:
            check_cross_site(request)
            data = await read_json(request, max_body_bytes)
            return JSONResponse(await asyncio.get_running_loop().run_in_executor(worker, work, data))

        return endpoint

    routes = [Route(path, asset, methods=["GET"]) for path in assets]
    routes += [
        Route("/api/info", info, methods=["GET"]),
        Route("/api/initial", initial, methods=["GET"]),
        Route("/api/trace", post(explorer.trace_response), methods=["POST"]),
        Route("/api/features", post(explorer.features_response), methods=["POST"]),
        Route("/api/select", post(explorer.select_response), methods=["POST"]),
        Route("/api/match", post(explorer.match_response), methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if executor is None:  # the caller's own executor is the caller's to shut down
            worker.shutdown(wait=False, cancel_futures=True)

    trusted = Middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[trusted])
    # Kept on the app so that the temporary index folders live exactly as long as it does.
    app.state.explorer = explorer
    return app
