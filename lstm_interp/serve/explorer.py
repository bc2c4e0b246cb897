"""``Explorer``: the live explorer's work behind each route of :func:`~lstm_interp.serve.app.create_app`.

Each route is a :class:`Job`: its ``*_job`` method checks every field the request sends (raising :class:`ApiError`,
which names the field, the value and what was expected, :class:`~lstm_interp.serve.request_fields.RequestFields`)
and estimates its cost (:mod:`~lstm_interp.serve.cost`), without running the model; the job's ``work`` then does
the work on the model's thread, checking its :class:`~lstm_interp.serve.deadline.Deadline` between phases and inside
its long loops, and returns the response's JSON. ``*_response(data)`` does both at once, with no deadline. Tracing
is serialised by one lock, since a trace sets the model's eval mode and two at once on a few cores only wait.

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
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_interp.analysis import Match, StateIndex, find_cells, select_cells
from lstm_interp.analysis.control_scores import usable_controls
from lstm_interp.analysis.find_cells import row_rank
from lstm_interp.features import FEATURES, ConstantFeatureError, feature_values
from lstm_interp.interventions import Intervention, InterventionError, run_with_interventions
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.report._encode import display_codes
from lstm_interp.serve import cost
from lstm_interp.serve.api_error import ApiError
from lstm_interp.serve.corpus_indexes import CorpusIndexes
from lstm_interp.serve.deadline import Deadline, unlimited
from lstm_interp.serve.request_fields import INTERVENTION_OPS, MAX_INTERVENTIONS, RequestFields, _number, suspect
from lstm_interp.serve.sessions import Sessions, session_of
from lstm_interp.tracing import Trace, trace
from lstm_interp.tracing.quantities import QUANTITY_KINDS, quantities_of, state_quantity
from lstm_interp.tracing.trace import DEFAULT_CHUNK_SIZE

__all__ = ["ApiError", "Explorer", "Job"]

TOP_K = 5
PATTERN_CELLS = 32  # selected cells whose on/off rows a match carries (the count of cells on covers them all)
# A run under interventions goes in segments of this many steps, the state carried from one to the next, and the
# deadline is checked between them. It is the trace's own chunk, so a segmented run is the same computation as one.
SEGMENT_STEPS = DEFAULT_CHUNK_SIZE
# A plain run goes in chunks of this many steps from the text's start, the deadline checked between them: the grid of
# the sessions' resumable traces (lstm_interp.serve.sessions), so a full trace and a resumed one agree bit for bit. An
# appended character costs one chunk at most. 16 rather than 32: at 5,000 characters a keystroke's median 15.8 ms
# against 20.2, a full retrace 3.2 s against 2.7 (1.96 s in one chunk); RESULTS.md, "Keystroke latency".
EDIT_CHUNK = 16


@dataclass(frozen=True)
class Job:
    """A checked request: its estimated ``cost`` and the ``work`` that answers it, given its deadline."""

    cost: cost.Cost
    work: Callable[[Deadline], dict[str, Any]]

    def __call__(self, deadline: Deadline | None = None) -> dict[str, Any]:
        return self.work(deadline if deadline is not None else unlimited())


class Explorer(RequestFields):
    """The model, its corpus indexes (one per corpus and threshold) and the work of every route.

    Args:
        model: the network.
        corpora: what to match in, each a text (``str``) or a UTF-8 file (``Path``, streamed), indexed at every one
            of ``thresholds`` (characters the model does not know are skipped): opened from the index cache when an
            entry matches, else built into it (:func:`~lstm_interp.analysis.index_cache.cached_index`), so the next
            start opens it.
        thresholds: the thresholds θ the corpora are indexed at; a match at another θ is refused, naming these.
        max_text_chars: the longest text traced.
        background: index the corpora on a thread of their own (:class:`~lstm_interp.serve.corpus_indexes.
            CorpusIndexes`): the explorer is made at once, and corpus requests answer 503 "indexing, n%" meanwhile.
        index_after: with ``background``, the indexing starts when this event is set (create_app sets it once the
            opening passage is worked out), or after a minute.

    Plain traces are resumed per page session (:mod:`~lstm_interp.serve.sessions`): a keystroke retraces from the
    first changed character, on a grid of :data:`EDIT_CHUNK` steps that every plain trace here shares.
    """

    def __init__(
        self,
        model: CharLSTM,
        corpora: Sequence[str | Path],
        thresholds: Sequence[float],
        max_text_chars: int,
        *,
        background: bool = False,
        index_after: threading.Event | None = None,
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
        self.lock = threading.RLock()  # reentrant: a trace job holds it across the run and reading the run's views
        self.sessions = Sessions(model, EDIT_CHUNK)
        self.corpora = list(corpora)  # the first one is where the page opens (lstm_interp.serve.opening)
        self.corpus_names = [f"corpus {i}" if isinstance(c, str) else Path(c).name for i, c in enumerate(corpora)]
        self.corpus_indexes = CorpusIndexes(
            model, self.corpora, self.thresholds, background=background, start_after=index_after
        )

    @property
    def indexes(self) -> list[dict[float, StateIndex]]:
        """Per corpus, its index at each threshold; empty until all are ready."""
        return self.corpus_indexes.indexes

    @property
    def indexing(self) -> tuple[int, int, int, int] | None:
        return self.corpus_indexes.indexing

    def indexing_percent(self) -> float | None:
        return self.corpus_indexes.percent()

    def require_indexes(self) -> None:
        self.corpus_indexes.require()

    def info(self) -> dict[str, Any]:
        return {
            "cell": self.cell, "layers": self.layers, "quantities": self.quantities,
            "state_quantity": self.state_quantity, "kinds": {q: QUANTITY_KINDS[q] for q in self.quantities},
            "hidden_size": self.hidden_size, "vocab": self.vocab.chars, "corpora": self.corpus_names,
            "corpus_steps": None if self.indexing else [len(next(iter(ix.values()))) for ix in self.indexes],
            "indexing": self.indexing_percent(),
            "thresholds": self.thresholds, "features": list(FEATURES), "max_text_chars": self.max_text_chars,
            "intervention_ops": list(INTERVENTION_OPS), "max_interventions": MAX_INTERVENTIONS,
        }  # fmt: skip

    def run(
        self,
        known: str,
        names: list[str],
        interventions: Sequence[Intervention] = (),
        deadline: Deadline | None = None,
    ) -> Trace:
        """The trace of ``known`` under ``interventions``, the ``deadline`` checked between chunks: a plain run on
        the :data:`EDIT_CHUNK` grid, an intervened one in segments of :data:`SEGMENT_STEPS` steps
        (run_with_interventions has no hook to stop inside one)."""
        deadline = deadline if deadline is not None else unlimited()
        if not interventions:
            return self.run_edited(known, names, None, deadline)[0]
        parts: list[Trace] = []
        with self.lock, torch.inference_mode():
            for start in range(0, len(known), SEGMENT_STEPS):
                deadline.check()
                stop = min(start + SEGMENT_STEPS, len(known))
                state = parts[-1].final_state if parts else None
                acting = [iv for iv in (_within(iv, start, stop) for iv in interventions) if iv is not None]
                if acting:
                    part = run_with_interventions(self.model, known[start:stop], acting, names_filter=names,
                                                  state=state)  # fmt: skip
                else:
                    part = trace(self.model, known[start:stop], names_filter=names, state=state)
                parts.append(part)
        return Trace.concat(parts)

    def run_edited(
        self, known: str, names: list[str], session: str | None, deadline: Deadline | None = None
    ) -> tuple[Trace, int, int | None, int | None]:
        """The plain trace of ``known``, resumed from the session's last text of ``names`` where they agree
        (:mod:`~lstm_interp.serve.sessions`): ``(trace, start, held, version)``, ``start`` the first step traced
        again, ``held`` the version of the response the entry last gave (the steps before ``start`` are that
        response's), ``version`` this one's (``None`` without a session). Call it holding :attr:`lock` while the
        trace is read: its tensors are the entry's buffers, which the session's next request writes over."""
        deadline = deadline if deadline is not None else unlimited()
        with self.lock, torch.inference_mode():
            entry = self.sessions.entry(session, names)
            held, entry.version = entry.version, None  # until the update is whole
            result, start = entry.editing.update(known, check=deadline.check)
            if session is not None:
                entry.version = self.sessions.next_version()
            return result, start, held, entry.version

    # ------------------------------------------------------------------ the routes
    def trace_job(self, data: dict[str, Any]) -> Job:
        """``POST /api/trace``: every unit's display codes at one layer and quantity, the top-5 and the loss."""
        text = self.text_of(data)
        layer = self.layer_of(data, self.layers[-1])
        quantity = self.quantity_of(data)
        interventions = self.interventions_of(data, text)
        session, base = session_of(data)
        name = f"{layer}.{quantity}"
        unknown, known = self.known(text)

        def work(deadline: Deadline) -> dict[str, Any]:
            started = time.perf_counter()
            response: dict[str, Any] = {
                "chars": list(text), "unknown": unknown, "unknown_chars": sorted({text[i] for i in unknown}),
                "layer": layer, "quantity": quantity,
                "hidden_size": self.hidden_size, "steps": len(known), "values": "", "top": [], "loss": None,
                "interventions": len(interventions), "from": 0, "version": None,
            }  # fmt: skip
            if known:
                with self.lock:  # the session's buffers are read below: no other request may write them meanwhile
                    self._trace_values(response, known, name, quantity, interventions, session, base, data, deadline)
            response["server_ms"] = (time.perf_counter() - started) * 1000
            return response

        return Job(cost.trace_cost(len(known), len(interventions)), work)

    def trace_response(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.trace_job(data)()

    def _trace_values(
        self,
        response: dict[str, Any],
        known: str,
        name: str,
        quantity: str,
        interventions: Sequence[Intervention],
        session: str | None,
        base: int | None,
        data: dict[str, Any],
        deadline: Deadline,
    ) -> None:
        """Fill a trace response's values, top-5 rows and loss: from step ``from`` on when the page holds the
        session's last response (``base``), the whole text otherwise."""
        ids = self.vocab.encode(known)
        if interventions:
            try:
                result = self.run(known, [name, "log_probs"], interventions, deadline)
            except InterventionError as err:  # checked when built: what fails in the run is the numbers
                raise ApiError(422, f"{suspect(data['interventions'], interventions)} ({err})") from None
            # The same text without them, so the page can show what the interventions changed.
            plain = self.run_edited(known, ["log_probs"], session, deadline)[0]
            response["base_top"], response["base_loss"] = self._predictions(plain["log_probs"], ids)
            start = 0
        else:
            result, start, held, response["version"] = self.run_edited(known, [name, "log_probs"], session, deadline)
            start = start if base is not None and base == held else 0
        deadline.check()
        codes = display_codes(result[name][start:], quantity)  # (H, T - start)
        response["values"] = base64.b64encode(codes.numpy().tobytes()).decode("ascii")
        response["top"], response["loss"] = self._predictions(result["log_probs"], ids, start)
        response["from"] = start

    def _predictions(
        self, log_probs: torch.Tensor, ids: torch.Tensor, start: int = 0
    ) -> tuple[list[list[Any]], float | None]:
        """The top-5 next characters at each step from ``start`` on, and the mean loss in nats of predicting each
        next character of the whole text."""
        log_probs = log_probs.to(torch.float32)  # (T, V)
        probs, top_ids = log_probs[start:].exp().topk(min(TOP_K, len(self.vocab)), dim=-1)
        chars = self.vocab.chars
        top = [
            [[chars[i], round(p, 4)] for i, p in zip(row_ids, row_probs, strict=True)]
            for row_ids, row_probs in zip(top_ids.tolist(), probs.tolist(), strict=True)
        ]
        if len(ids) < 2:
            return top, None
        loss = -log_probs[:-1].gather(1, ids[1:, None].long()).mean().item()
        return top, round(loss, 5)

    def features_job(self, data: dict[str, Any]) -> Job:
        """``POST /api/features``: per registered feature that varies on the text, the ``top`` units tracking it."""
        text = self.text_of(data)
        quantity = self.quantity_of(data)
        top = self.int_of(data, "top", 3, 1, 20)
        session, _ = session_of(data)
        _, known = self.known(text)

        def work(deadline: Deadline) -> dict[str, Any]:
            if len(known) < 2:
                return {"features": [], "constant": list(FEATURES), "quantity": quantity}
            with self.lock:  # the rankings read the session's buffers
                names = [f"{layer}.{quantity}" for layer in self.layers]
                result = self.run_edited(known, names, session, deadline)[0]
                rows, constant = self.feature_rows(result, known, quantity, top, deadline)
            return {"features": rows, "constant": constant, "quantity": quantity}

        return Job(cost.features_cost(len(known)), work)

    def features_response(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.features_job(data)()

    def feature_rows(
        self, result: Trace, known: str, quantity: str, top: int, deadline: Deadline | None = None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Per registered feature that varies on ``known`` (traced as ``result``), its ``top`` units in find_cells's
        order, scored against its usable controls; the features in :func:`~lstm_interp.analysis.find_cells.row_rank`
        order. Also the names of the features constant on ``known``. ``deadline`` is checked before each feature."""
        deadline = deadline if deadline is not None else unlimited()
        rows, constant = [], []
        for feature in FEATURES.values():
            deadline.check()
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

    def select_job(self, data: dict[str, Any]) -> Job:
        """``POST /api/select``: LSTMVis's selection over a span of the typed text (``text``) or of a corpus."""
        quantity = self.quantity_of(data)
        layer = self.layer_of(data, None)
        before = self.int_of(data, "before", 1, 0)
        after = self.int_of(data, "after", 0, 0)
        if "corpus" in data:  # a span of a corpus passage: read from its index, so at the index's threshold
            self.require_indexes()
            quantity, theta = self.indexed_quantity(data), self.indexed_threshold(data)
            corpus = self.int_of(data, "corpus", 0, 0, len(self.indexes) - 1)
            index = self.indexes[corpus][theta]
            start, end = self.span_of(data, len(index), f"corpus {corpus}")
            window = min(len(index), end + after) - max(0, start - before)
            spent = cost.corpus_select_cost(1 if layer else len(self.layers), self.hidden_size, window)

            def corpus_work(deadline: Deadline) -> dict[str, Any]:
                cells = index.select((start, end), before, after, layer=layer)
                listed = [list(c) for c in cells]
                return {"cells": listed, "quantity": quantity, "steps": [start, end], "corpus": corpus}

            return Job(spent, corpus_work)
        text = self.text_of(data)
        start, end = self.span_of(data, len(text), "the text")
        threshold = _number(data.get("threshold", 0.3), "`threshold`")
        span = self.steps_in(text, start, end, "")
        _, known = self.known(text)

        def work(deadline: Deadline) -> dict[str, Any]:
            names = [f"{name}.{quantity}" for name in ([layer] if layer else self.layers)]
            result = self.run(known, names, (), deadline)
            cells = select_cells(result, span, threshold, before, after, quantity=quantity, layer=layer)
            return {"cells": [list(c) for c in cells], "quantity": quantity, "steps": list(span)}

        return Job(cost.text_select_cost(len(known)), work)

    def select_response(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.select_job(data)()

    def match_job(self, data: dict[str, Any]) -> Job:
        """``POST /api/match``: the corpus spans where the ``cells`` are on together, ranked, each with its passage
        and the cells' on/off pattern over it."""
        self.require_indexes()
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
        shown = pairs[:PATTERN_CELLS]
        corpus_steps = [len(indexes[theta]) for indexes in self.indexes]

        def work(deadline: Deadline) -> dict[str, Any]:
            found = []
            for corpus, indexes in enumerate(self.indexes):
                deadline.check()
                found += [(corpus, indexes[theta], match) for match in indexes[theta].match(pairs, top)]
            # The best of all corpora, by the index's own ranking: most selected cells on, then fewest others.
            found.sort(key=lambda f: (-f[2].intersection, f[2].union, -f[2].length, f[0], f[2].start))
            matches = [
                self._match_json(corpus, index, match, shown, context, deadline) for corpus, index, match in found[:top]
            ]
            return {"matches": matches, "threshold": theta, "pattern_cells": [list(c) for c in shown]}

        return Job(cost.match_cost(corpus_steps, len(pairs), top, context, len(shown)), work)

    def match_response(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.match_job(data)()

    def _match_json(
        self,
        corpus: int,
        index: StateIndex,
        match: Match,
        cells: list[tuple[str, int]],
        context: int,
        deadline: Deadline,
    ) -> dict[str, Any]:
        before, span, after = index.passage(match, context)
        offset, stop = match.start - len(before), match.end + len(after)
        pattern = []
        for layer, unit in cells:  # checked per cell: one match's span may run over much of the corpus
            deadline.check()
            row = index.bits(f"{layer}.{self.state_quantity}", [unit], offset, stop)[0]
            # "0"/"1" as bytes 48/49: a hundred times faster than joining a string per step (issue 21's 39 s match).
            pattern.append((row.astype(np.uint8) + ord("0")).tobytes().decode("ascii"))
        return {
            "corpus": corpus, "start": match.start, "end": match.end, "offset": offset, "jaccard": match.jaccard,
            "intersection": match.intersection, "union": match.union, "before": before, "span": span, "after": after,
            # One string per shown cell (the order of "pattern_cells"): "1" where it is on at that passage step.
            "pattern": pattern,
        }  # fmt: skip


def _within(iv: Intervention, start: int, stop: int) -> Intervention | None:
    """``iv`` for the segment of steps ``[start, stop)``, its ``steps`` (a slice, or every step) counted from the
    segment's start; ``None`` if it does not act there."""
    steps = iv.steps
    if steps is None:
        return iv
    if not isinstance(steps, slice):  # the routes build slices only
        raise TypeError(f"an intervention's steps must be a slice here, got {type(steps).__name__}")
    lo, hi = max(steps.start or 0, start), min(stop if steps.stop is None else steps.stop, stop)
    if lo >= hi:
        return None
    return dataclasses.replace(iv, steps=slice(lo - start, hi - start))
