"""The live explorer's web app: one page and a small JSON API over a model (``create_app``).

Routes (the work of each is :class:`~lstm_interp.serve.explorer.Explorer`'s):

- ``GET /``, ``GET /page.js``, ``GET /colours.js``, ``GET /predict_rows.js``, ``GET /atlas_card.js`` and
  ``GET /atlas.css``: the bundled page, its scripts and the atlas card's style (the colour scale, the read-and-predict
  rows and the card are the static report's and the unit atlas's own files); no other file is served;
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
  passage and the on/off pattern of the selected cells over it;
- ``GET /api/atlas/{layer}/{unit}``: with an atlas (``--atlas DIR``, :class:`~lstm_interp.analysis.UnitAtlas`), the
  unit's card and what the card's script reads of the atlas's meta; 404 without one.

Errors are JSON ``{"error": message}`` with status 400 (a bad value, named), 413 (a body, a text or a request's
estimated cost over its limit, :mod:`~lstm_interp.serve.cost`), 422 (interventions that make the predictions NaN or
infinite), 503 (waited too long for the model's thread) or 504 (ran past its deadline,
:mod:`~lstm_interp.serve.deadline`). A client that disconnects cancels its request's work. Every route, field,
default and limit is in ``docs/explorer_api.md``.
The server never writes text into HTML: the page builds its DOM with ``textContent`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from lstm_interp.analysis._index_files import _pieces as corpus_pieces
from lstm_interp.analysis.select_cells import check_threshold
from lstm_interp.analysis.unit_atlas import UnitAtlas
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.report.atlas_pages import page_meta
from lstm_interp.serve import cost
from lstm_interp.serve.api_error import ApiError
from lstm_interp.serve.deadline import ClientGone, WorkQueue
from lstm_interp.serve.explorer import Explorer, Job
from lstm_interp.serve.index_folders import remove_stale_index_folders
from lstm_interp.serve.json_safety import check_unicode, json_response
from lstm_interp.serve.opening import opening_steps
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
# nginx's "client closed request": what a request whose client left gets, if anything reads it (no one does).
CLIENT_GONE = 499
# What GET /api/info says of the atlas.
_ATLAS_INFO = ("layers", "quantity", "kind", "k", "window", "steps", "corpus")


Endpoint = Callable[[Request], Awaitable[Response]]


def _api(handler: Endpoint) -> Endpoint:
    """``handler`` with ApiError, ValueError and KeyError turned into a JSON error (a traceback helps no one), and a
    client that left, mid-body or while its work ran, answered with nothing logged (there is no one to tell)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as err:
            headers = {"Retry-After": "1"} if err.status == 503 else None
            return json_response(err.to_json(), err.status, headers)
        except (ValueError, KeyError) as err:
            # The library's checks (select_cells, StateIndex.match, an intervention's range) name the bad value.
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            return json_response({"error": str(message)}, 400)
        except (ClientDisconnect, ClientGone):
            return Response(status_code=CLIENT_GONE)

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
    request_timeout_s: float = 10.0,
    queue_timeout_s: float = 30.0,
    max_request_cost: float | None = None,
    atlas: UnitAtlas | str | os.PathLike | None = None,
    index_in_background: bool = False,
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
        index_in_background: build the corpus indexes on a thread of their own after the app is made, so the
            server answers at once; until they are ready, corpus selections and matches answer 503 with the
            progress ("indexing, 42%"), which the page shows, and ``/api/info`` gives it as ``indexing``.
            ``lstm-interp serve`` does this. Default: built before the app is returned.
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
        request_timeout_s: the longest a request's work may run, from when it starts on the model's thread; past
            it the request gets 504 and its work stops at its next check (:mod:`~lstm_interp.serve.deadline`).
        queue_timeout_s: the longest a request may wait for the model's thread (behind other requests); past it,
            503 and its work never starts. Kept apart from ``request_timeout_s`` so that a request queued behind a
            long one is not failed for the wait.
        max_request_cost: the largest estimated cost (:mod:`~lstm_interp.serve.cost`, units of about a millisecond
            of the reference model's work) a request may have; larger: 413 before it is queued. Default:
            ``COST_PER_TIMEOUT_S`` (500) per second of ``request_timeout_s``, half the deadline.
        atlas: a :class:`~lstm_interp.analysis.UnitAtlas` of ``model``, or the folder ``lstm-interp atlas`` wrote:
            ``GET /api/atlas/{layer}/{unit}`` then serves each unit's card, and the page shows the card of the unit
            it shows. It must have been made of this model (config and weights, by sha256).

    On start, the index folders that servers killed before they could remove them left in the temporary folder are
    removed (:func:`~lstm_interp.serve.index_folders.remove_stale_index_folders`; only folders with our marker whose
    process is gone).

    Raises:
        TypeError: ``model`` is not a CharLSTM, or ``corpus_texts`` is one ``str``.
        FileNotFoundError: a corpus file is missing.
        ValueError: no ``allowed_hosts``, a limit below 1, a time limit or cost limit that is not a positive finite
            number, no or repeated thresholds or one that is not finite, a corpus the index cannot be built from
            (empty, not UTF-8, or no known character), or an atlas of another model (or not finished).
        FileNotFoundError: an atlas folder without ``atlas.json``.

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
    if max_request_cost is None:
        max_request_cost = cost.COST_PER_TIMEOUT_S * request_timeout_s if _positive(request_timeout_s) else 0.0
    limits = {"request_timeout_s": request_timeout_s, "queue_timeout_s": queue_timeout_s,
              "max_request_cost": max_request_cost}  # fmt: skip
    for label, value in limits.items():
        if not _positive(value):
            raise ValueError(f"`{label}` must be a positive finite number, got {value!r}")
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
    if index_in_background:
        # What the build would refuse at once is refused now, before the server starts: a file that is not UTF-8
        # (decoding runs at the speed of reading; tracing is what takes the time).
        for _ in corpus_pieces(files):
            pass
    cards = _atlas(atlas, model)
    remove_stale_index_folders()
    # Every request's work runs on this one thread, in turn (see `executor` above).
    worker = executor if executor is not None else ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstm-interp")
    # A background index build starts once the opening is worked out: it imports Lightning and traces, and on two
    # cores that slowed the first trace a reader asked for by seconds (the GIL and the cores shared three ways).
    opened = threading.Event()
    explorer = worker.submit(Explorer, model, [*corpus_texts, *files], thresholds, max_text_chars,
                             background=index_in_background, index_after=opened).result()  # fmt: skip
    # Started now, not awaited, so the server starts at once: with the 2x512 models and a corpus the opening takes a
    # few seconds on 2 cores. It runs on the model's thread one passage at a time, each step queued behind the
    # requests that came meanwhile, so what a reader types is traced within a step, not after the whole opening.
    opening = _in_steps(worker, opening_steps(explorer))
    opening.add_done_callback(lambda _: opened.set())
    queue = WorkQueue(worker, request_timeout_s, queue_timeout_s)
    assets = {
        "/": (_bundled("lstm_interp.serve", "page.html"), "text/html"),
        "/page.js": (_bundled("lstm_interp.serve", "page.js"), "text/javascript"),
        "/colours.js": (_bundled("lstm_interp.report", "colours.js"), "text/javascript"),
        "/predict_rows.js": (_bundled("lstm_interp.report", "predict_rows.js"), "text/javascript"),
        "/atlas_card.js": (_bundled("lstm_interp.report", "atlas_card.js"), "text/javascript"),
        "/atlas.css": (_bundled("lstm_interp.report", "atlas.css"), "text/css"),
    }

    async def asset(request: Request) -> Response:
        body, media = assets[request.url.path]
        return Response(body, media_type=f"{media}; charset=utf-8", headers=_SECURITY_HEADERS)

    async def info(request: Request) -> Response:
        budget = limits | {"request_costs": cost.FORMULAS, "work": queue.stats.to_dict()}
        described = None if cards is None else {key: cards.meta.get(key) for key in _ATLAS_INFO}
        return json_response(explorer.info() | {"max_body_bytes": max_body_bytes, "atlas": described} | budget)

    @_api
    async def atlas_card(request: Request) -> Response:
        if cards is None:
            raise ApiError(404, "this server has no unit atlas: start it with --atlas DIR (made by lstm-interp atlas)")
        layer, unit = request.path_params["layer"], request.path_params["unit"]
        if not unit.isdigit():
            raise ApiError(400, f"the unit must be an integer 0 .. {cards.hidden_size - 1}, got {unit!r}")
        # A dictionary lookup: no model work, so it is answered on the event loop, even while the model is busy.
        return json_response({"card": cards.card(layer, int(unit)), "meta": page_meta(cards.meta)})

    async def initial(request: Request) -> Response:
        try:
            return json_response(await asyncio.wrap_future(opening))
        except Exception as err:  # the server's own failure, not the request's: say what failed, keep serving
            message = f"the opening passage could not be worked out: {type(err).__name__}: {err}"
            return json_response({"error": message}, 500)

    def post(route: str, plan: Callable[[dict[str, Any]], Job]) -> Endpoint:
        @_api
        async def endpoint(request: Request) -> Response:
            check_cross_site(request)
            try:
                data = await read_json(request, max_body_bytes)
            except ClientDisconnect:  # left mid-body: answered with nothing logged (_api)
                queue.stats.count("gone")
                raise
            check_unicode(data)
            # Checked and costed here, on the event loop (no model work): a bad or too costly request is refused at
            # once, even while the model's thread is busy.
            job = plan(data)
            if job.cost.units > max_request_cost:
                queue.stats.count("refused")
            cost.check_cost(route, job.cost, max_request_cost)
            return json_response(await queue.run(request, job.work))

        return endpoint

    routes = [Route(path, asset, methods=["GET"]) for path in assets]
    routes += [
        Route("/api/info", info, methods=["GET"]),
        Route("/api/initial", initial, methods=["GET"]),
        Route("/api/atlas/{layer}/{unit}", atlas_card, methods=["GET"]),
        Route("/api/trace", post("/api/trace", explorer.trace_job), methods=["POST"]),
        Route("/api/features", post("/api/features", explorer.features_job), methods=["POST"]),
        Route("/api/select", post("/api/select", explorer.select_job), methods=["POST"]),
        Route("/api/match", post("/api/match", explorer.match_job), methods=["POST"]),
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
    app.state.work = queue.stats  # what became of each request's work (also GET /api/info's "work")
    return app


def _atlas(atlas: UnitAtlas | str | os.PathLike | None, model: CharLSTM) -> UnitAtlas | None:
    """The atlas, loaded from its folder if given one, checked to be finished and of ``model``."""
    if atlas is None:
        return None
    loaded = atlas if isinstance(atlas, UnitAtlas) else UnitAtlas.load(atlas)
    loaded.cards()  # an unfinished atlas fails here
    if not loaded.matches(model):
        where = "the atlas" if isinstance(atlas, UnitAtlas) else f"the atlas in {str(atlas)!r}"
        raise ValueError(
            f"{where} was made of another model (its config or weights sha256 differ from the served model's); "
            "make one of this model: lstm-interp atlas MODEL CORPUS --out DIR"
        )
    return loaded


def _in_steps(worker: Executor, steps: Generator[None, None, Any]) -> Future[Any]:
    """Run a generator on ``worker`` one step (up to its next ``yield``) per job, each job queued after the last has
    run, so that other jobs submitted meanwhile go between; the future holds what it returns, or what it raised."""
    done: Future[Any] = Future()

    def advance() -> None:
        try:
            next(steps)
        except StopIteration as finished:
            done.set_result(finished.value)
        except Exception as err:  # the page's /api/initial says it
            done.set_exception(err)
        else:
            try:
                worker.submit(advance)
            except RuntimeError as err:  # the worker was shut down (the server is stopping)
                done.set_exception(err)

    worker.submit(advance)
    return done


def _positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value > 0
