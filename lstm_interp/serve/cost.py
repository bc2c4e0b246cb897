"""What a request of the live explorer costs, estimated from its fields before any work is done (issue 21).

Each route's estimate is in **cost units**, one about a millisecond of work for the ``novel`` model (a 2x512 LSTM)
on one torch thread of the reference machine (2 CPU cores, one of them busy), so that one limit serves every route.
A request whose estimate is over the server's ``max_request_cost`` is refused with 413 before it is queued, and the
message names the estimate, how it was worked out, the limit and the fields to reduce. The estimates are linear in
what dominates each route's time (measured: ``docs/explorer_api.md#time-and-cost-limits``):

- ``/api/trace``: ``steps x (0.4 + [0.5 + 0.02 x interventions])``, the bracket only with interventions. Tracing
  costs ~0.4 per step (the plain trace, display codes and top-5); interventions run the layers' step loop (~0.5 per
  step) plus ~0.02 per intervention per step, and the plain run again for ``base_top``.
- ``/api/features``: ``0.6 x steps``: a trace of every layer, then every feature scored on every unit.
- ``/api/select`` over the text: ``0.4 x steps`` (the trace); over a corpus: ``5e-6 x layers x hidden x window``
  (the window's bits unpacked, ``window`` = span + before + after steps).
- ``/api/match``: ``4e-6 x corpus steps x cells`` (ranking, over every corpus) ``+ top x (0.15 + shown cells x
  (0.02 + 1e-6 x (2 context + 2)))``: each match's passage and the on/off string of each shown cell (at most
  :data:`~lstm_interp.serve.explorer.PATTERN_CELLS`) over it, the span taken as 2 steps (its length is unknown
  before matching; the deadline covers a longer one).

The units are those of the reference model: a bigger model's work takes longer than its estimate says, a smaller
one's less; the request deadline (:mod:`~lstm_interp.serve.deadline`) bounds what an estimate misses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lstm_interp.serve.api_error import ApiError

TRACE_PER_STEP = 0.4
INTERVENED_PER_STEP = 0.5
INTERVENTION_PER_STEP = 0.02
FEATURES_PER_STEP = 0.6
SELECT_PER_STEP = 0.4
CORPUS_SELECT_PER_BIT = 5e-6
RANK_PER_CELL_STEP = 4e-6
MATCH_PER_MATCH = 0.15
MATCH_PER_PATTERN = 0.02
MATCH_PER_PATTERN_STEP = 1e-6
# The default max_request_cost per second of request_timeout_s: half the deadline's milliseconds, so that the work
# a request is let start fits its deadline on a machine up to twice as slow as the reference.
COST_PER_TIMEOUT_S = 500.0

FORMULAS = {
    "trace": f"steps x ({TRACE_PER_STEP:g} + [{INTERVENED_PER_STEP:g} + {INTERVENTION_PER_STEP:g} x interventions], "
    "the bracket only with interventions)",
    "features": f"{FEATURES_PER_STEP:g} x steps",
    "select": f"text: {SELECT_PER_STEP:g} x steps; corpus: {CORPUS_SELECT_PER_BIT:g} x layers x hidden_size x "
    "(span + before + after)",
    "match": f"{RANK_PER_CELL_STEP:g} x corpus steps x cells + top x ({MATCH_PER_MATCH:g} + min(cells, 32) x "
    f"({MATCH_PER_PATTERN:g} + {MATCH_PER_PATTERN_STEP:g} x (2 context + 2)))",
}


@dataclass(frozen=True)
class Cost:
    """A request's estimated cost: ``units``, how they were worked out (``terms``, in the request's own numbers)
    and what to send instead when they are too many (``reduce``)."""

    units: float
    terms: str
    reduce: str


def trace_cost(steps: int, interventions: int) -> Cost:
    per_step = TRACE_PER_STEP
    terms = f"{steps:,} steps x {TRACE_PER_STEP:g}"
    if interventions:
        per_step += INTERVENED_PER_STEP + INTERVENTION_PER_STEP * interventions
        terms = (
            f"{steps:,} steps x ({TRACE_PER_STEP:g} + {INTERVENED_PER_STEP:g} + {interventions} interventions x "
            f"{INTERVENTION_PER_STEP:g})"
        )
    return Cost(steps * per_step, terms, "a shorter `text` or fewer `interventions`")


def features_cost(steps: int) -> Cost:
    return Cost(steps * FEATURES_PER_STEP, f"{steps:,} steps x {FEATURES_PER_STEP:g}", "a shorter `text`")


def text_select_cost(steps: int) -> Cost:
    return Cost(steps * SELECT_PER_STEP, f"{steps:,} steps x {SELECT_PER_STEP:g}", "a shorter `text`")


def corpus_select_cost(layers: int, hidden_size: int, window: int) -> Cost:
    units = CORPUS_SELECT_PER_BIT * layers * hidden_size * window
    terms = f"{CORPUS_SELECT_PER_BIT:g} x {layers} layers x {hidden_size} units x {window:,} steps"
    return Cost(units, terms, "a shorter `span`, a smaller `before`/`after`, or one `layer`")


def match_cost(corpus_steps: Sequence[int], cells: int, top: int, context: int, shown: int) -> Cost:
    steps = sum(corpus_steps)
    ranking = RANK_PER_CELL_STEP * steps * cells
    per_match = MATCH_PER_MATCH + shown * (MATCH_PER_PATTERN + MATCH_PER_PATTERN_STEP * (2 * context + 2))
    terms = (
        f"{RANK_PER_CELL_STEP:g} x {steps:,} corpus steps x {cells} cells + top {top} x ({MATCH_PER_MATCH:g} + "
        f"{shown} shown cells x ({MATCH_PER_PATTERN:g} + {MATCH_PER_PATTERN_STEP:g} x {2 * context + 2} passage "
        "steps))"
    )
    return Cost(ranking + top * per_match, terms, "a smaller `top` or `context`, or fewer `cells`")


def check_cost(route: str, cost: Cost, limit: float) -> None:
    """Refuse (413) a request whose estimate is over ``limit``, naming the estimate, the limit and what to reduce."""
    if cost.units > limit:
        raise ApiError(
            413,
            f"this {route} request is estimated at {cost.units:,.0f} cost units ({cost.terms}), over the limit of "
            f"{limit:,.0f} (max_request_cost, about a millisecond each); send {cost.reduce}",
            estimate=round(cost.units, 1),
            limit=limit,
        )
