"""``fit_probe``: a sparse linear probe that reads a feature from many units at once, and how many it needs.

:func:`~lstm_interp.find_cells` asks which *single* unit tracks a feature. A feature can also be carried by many
units together, none of which tracks it alone. Following NeuroX and Dalvi et al. (2019), an elastic-net probe is
fitted on every unit of the chosen layers, and its units are ranked by the size of their weights; Radford et al.
(2017) found a single sentiment unit that way. The :class:`Probe` says how *distributed* the feature is: the probe's
score, the best single unit's, and how many of the top units reach 95% of the probe's score.

**Values.** The probe reads what the pictures show (:func:`~lstm_interp.tracing.display_values`: ``tanh(c)`` for
the cell state, ``2g - 1`` for a gate), standardised per unit with the training part's mean and deviation (a unit
constant there gets weight 0). Weights are therefore comparable between units, and the ranking is by ``|weight|``.

**Positions.** ``trace`` may be one :class:`~lstm_interp.Trace` or the segments of a long text, as
:func:`~lstm_interp.trace_segments` yields them, so memory is bounded: at most ``max_rows`` positions are kept, the
multiples of a power-of-two stride (the smallest stride that keeps ``ceil(T / stride) <= max_rows``; the stride
doubles, dropping every other kept row, while the segments arrive). A whole trace and its segments therefore keep
exactly the same positions. A named feature is computed on the whole text, joined from the segments.

**Held-out split.** The last ``heldout`` share of the kept positions (a contiguous tail) is held out; the probe is
fitted on the rest. Not random rows: neighbouring characters have nearly the same activations and feature values,
so a random split would score a probe on near-copies of its training rows. Every score below is on the tail.

**Scores.** ``metric`` is ``"auc"`` for a binary feature (ROC AUC of the probe's logit, chance 0.5) and ``"r2"``
for a continuous one (R² of its prediction, chance 0).

**Fit.** The objective is the mean loss (logistic, or squared error on the standardised feature) plus
``alpha * (l1_ratio * |w|_1 + (1 - l1_ratio) / 2 * |w|²)``, the intercept unpenalised: scikit-learn's
``ElasticNet`` objective, and ``LogisticRegression``'s with ``C = 1 / (n * alpha)`` and
``class_weight="balanced"``. Both classes weigh half because a rare feature (parentheses in a novel, under 1% of
the characters) would otherwise meet the same penalty with a loss gradient a hundred times smaller and keep no
unit. A continuous feature is fitted by ``ElasticNet`` (coordinate descent on the precomputed Gram matrix); a
binary one by proximal Newton steps, as glmnet does: each step a weighted ``ElasticNet`` fit of the logistic loss's
quadratic expansion, then a backtracking line search on the true objective. Not ``LogisticRegression(solver=
"saga")``: on 80,000 positions x 1,024 units of the novel model (one core, ``benchmarks/bench_probe.py``, numbers
in ``benchmarks/RESULTS.md``) it stopped at its 100 epochs unconverged (91 s), at an objective of 0.0730 against
the 0.0530 these steps reach in 33 s; ``SGDClassifier`` stopped sooner (23 s) but at 0.1274.

**Penalty.** ``alpha = 0.01`` with ``l1_ratio = 0.5`` by default: a unit stays out unless its covariance with the
residual exceeds 0.005 (the lasso's condition), so the ranking stays short enough to read. On 100,000 characters
of the novel's test part it keeps 26 units for quotes and 250 for the position in the line
(``benchmarks/bench_probe.py``). Several alphas are chosen among on a validation slice (the last ``heldout`` share
of the training part): the largest within 0.005 of the best validation score.

**units_needed.** The units in the ranking's order; the probe is refitted (same penalty) on the top ``n`` for ``n``
on a grid of about ``sqrt(2)`` steps (1, 2, 3, 4, 6, 8, 11, ...) up to all its non-zero units (whose score is the
probe's own: the same optimum). The target is 95% of the way from chance to the probe's score: ``0.5 + 0.95 *
(score - 0.5)`` for AUC, ``0.95 * score`` for R². ``units_needed`` is the smallest ``n`` whose score reaches it,
found on the grid and then by bisection between the last grid size below and the first that reaches it (assuming
the score grows with ``n`` there). Every ``n`` tried is in ``curve``. ``None`` when the probe does not beat chance.

**best_single.** The unit with the best score on the training part (``max(AUC, 1 - AUC)``, or ``|r|``), and its
held-out score: ``max(AUC, 1 - AUC)``, or the R² of the least-squares line fitted on the training part.

**Control task** (Hewitt & Liang 2019; :mod:`~lstm_interp.analysis.control_task`): the same probe fitted on labels
given per character type, with the feature's marginals; ``selectivity = score - control_score``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from lstm_interp.analysis._scores import auc_columns, pearson_columns
from lstm_interp.analysis.control_task import control_task
from lstm_interp.analysis.find_cells import FeatureLike, _feature_values
from lstm_interp.analysis.probe_rows import ProbeRows, TraceLike, probe_rows
from lstm_interp.analysis.probe_solver import SOLVERS, fit_elastic_net, fit_targets, standardize
from lstm_interp.features import Feature, FeatureKind, get_feature
from lstm_interp.features.feature_values import check_feature_values
from lstm_interp.tracing import Trace

DEFAULT_ALPHA = 0.01
DEFAULT_L1_RATIO = 0.5
DEFAULT_MAX_ROWS = 50_000  # (50,000, 1,024) float32 values are 205 MB
MIN_POSITIONS = 100
NEEDED_SHARE = 0.95
ALPHA_SLACK = 0.005  # validation score a larger (sparser) alpha may lose against the best
_CONTROL_DRAWS = 20


@dataclass(frozen=True)
class Probe:
    """A fitted sparse probe of one feature (see the module docstring for every rule).

    Args:
        feature: the feature's name (``"<array>"`` for precomputed values).
        metric: ``"auc"`` (binary feature) or ``"r2"`` (continuous), the metric of every score here.
        quantity: the traced quantity probed (``"cell"``, ...); layers: the layers probed.
        score: the probe's held-out score.
        units: ``(layer, unit, weight)`` of every unit with a non-zero weight, by ``|weight|``, largest first
            (weights of standardised units).
        units_needed: how many top units reach ``target`` (``None``: the probe does not beat chance).
        target: 95% of the way from chance to ``score``.
        curve: ``(n, held-out score)`` of the probe refitted on the top ``n`` units, for every ``n`` tried.
        best_single: the held-out score of the single unit best on the training part; best_unit: that unit.
        control_score: the probe's held-out score on the control task; selectivity: ``score - control_score``.
        alpha, l1_ratio: the penalty; solver: how it was fitted; validation: ``(alpha, validation score)`` for each
            alpha tried when several were given.
        num_train, num_heldout: positions fitted on and held out; num_steps: steps in the trace; stride: every
            ``stride``-th position was kept; num_units: units probed; seed: the control task's.

    Example::

        >>> probe = fit_probe(trace(model, text), "inside_quotes")  # doctest: +SKIP
        >>> probe.score, probe.best_single, probe.units_needed, probe.selectivity  # doctest: +SKIP
        (0.998, 0.985, 3, 0.41)
    """

    feature: str
    metric: str
    quantity: str
    layers: tuple[str, ...]
    score: float
    units: tuple[tuple[str, int, float], ...]
    units_needed: int | None
    target: float
    curve: tuple[tuple[int, float], ...]
    best_single: float
    best_unit: tuple[str, int]
    control_score: float
    selectivity: float
    alpha: float
    l1_ratio: float
    solver: str
    num_train: int
    num_heldout: int
    num_steps: int
    stride: int
    num_units: int
    seed: int
    validation: tuple[tuple[float, float], ...] = ()

    @property
    def chance(self) -> float:
        """The score of a probe that knows nothing: 0.5 (AUC) or 0 (R²)."""
        return 0.5 if self.metric == "auc" else 0.0

    def top_units(self, k: int) -> list[tuple[str, int]]:
        """The first ``k`` ``(layer, unit)`` pairs of the ranking (fewer if fewer have a non-zero weight)."""
        return [(layer, unit) for layer, unit, _ in self.units[:k]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: every field, ``units`` and ``curve`` as lists of small objects."""
        data = asdict(self)
        data["layers"] = list(self.layers)
        data["units"] = [{"layer": layer, "unit": unit, "weight": weight} for layer, unit, weight in self.units]
        data["curve"] = [{"units": n, "score": score} for n, score in self.curve]
        data["best_unit"] = {"layer": self.best_unit[0], "unit": self.best_unit[1]}
        data["validation"] = [{"alpha": a, "score": s} for a, s in self.validation]
        return data

    def summary(self) -> str:
        """One line: the probe's score, units needed, the best single unit, the control and the selectivity."""
        layer, unit = self.best_unit
        return (
            f"{self.feature} ({self.metric}): probe {self.score:.3f} with {len(self.units)} units, "
            f"{self.units_needed} reach 95%; best single {layer}:{unit} {self.best_single:.3f}; "
            f"control {self.control_score:.3f}, selectivity {self.selectivity:+.3f}"
        )


def fit_probe(
    trace: TraceLike | ProbeRows,
    feature: FeatureLike,
    *,
    quantity: str = "cell",
    layers: str | int | Sequence[str | int] | None = None,
    kind: FeatureKind | None = None,
    label: str | None = None,
    heldout: float = 0.2,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float | Sequence[float] = DEFAULT_ALPHA,
    l1_ratio: float = DEFAULT_L1_RATIO,
    seed: int = 0,
) -> Probe:
    """Fit an elastic-net probe of ``feature`` on every unit of ``layers``, and measure how many units it needs.

    Args:
        trace: a trace, or an iterable of consecutive segments (``Trace`` items or ``(start, Trace)`` pairs, as
            :func:`~lstm_interp.trace_segments` yields them), or the :class:`ProbeRows` of one
            (:func:`probe_rows`, read once for several features; ``quantity`` and ``layers`` must then match it,
            and ``max_rows`` does not apply).
        feature: a registered feature name, a :class:`~lstm_interp.features.Feature`, a ``text -> array``
            callable (these need the traced text), or precomputed values, one per traced step.
        quantity: the per-layer quantity probed. layers: the layers, by name or index (default: all).
        kind: ``"binary"`` or ``"continuous"``, overriding the feature's own (see :func:`find_cells`).
        label: the feature's name in the result (default: the registered name, or ``"<array>"``).
        heldout: the share of the kept positions held out, as the contiguous tail of the text.
        max_rows: the most positions kept (evenly spaced; see the module docstring).
        alpha: the penalty's strength, or several to choose among on a validation slice.
        l1_ratio: the share of the penalty that is L1 (1: lasso).
        seed: the control task's draw (the fits themselves are deterministic).

    Returns:
        A :class:`Probe`.

    Raises:
        UnknownFeatureError: an unknown feature name (before any segment is read).
        ValueError: bad options; a layer or quantity the trace lacks (listing those it has); a trace without text
            for a feature that needs it; a feature of the wrong length, constant on the text, or with one class
            (one value) in the training part or the held-out tail; fewer than 100 kept positions; segments that
            are not consecutive. All before any fitting.
        TypeError: ``trace`` is neither a trace nor an iterable of them.
    """
    alphas = _check_options(heldout, max_rows, alpha, l1_ratio, seed)
    if isinstance(feature, str | Feature):
        feature = get_feature(feature)  # an unknown name fails here, listing the known ones
    needs_text = isinstance(feature, Feature) or callable(feature)
    if isinstance(trace, ProbeRows):
        rows = trace
        asked = None if layers is None else tuple([layers] if isinstance(layers, str | int) else layers)
        if quantity != rows.quantity or asked not in (None, rows.layers) or (needs_text and rows.text is None):
            held = f"{rows.quantity!r} of {list(rows.layers)} and {'no' if rows.text is None else 'the'} text"
            raise ValueError(f"these rows hold {held}; asked for {quantity!r} of {layers or 'them'}"
                             f"{' and the text' if needs_text else ''}: read them again with probe_rows")  # fmt: skip
    else:
        rows = probe_rows(trace, quantity, layers, max_rows=max_rows, with_text=needs_text,
                          max_steps=None if needs_text else len(feature))  # type: ignore[arg-type]  # fmt: skip
    text_only = Trace({}, text=rows.text, tokens=torch.zeros(rows.num_steps, dtype=torch.uint8), cell="lstm",
                      num_layers=0)  # fmt: skip
    values, own_label, metric = _feature_values(text_only, feature, kind, rows.num_steps)
    label = label or own_label
    check_feature_values(values, label, rows.num_steps, over="the text")
    metric = "auc" if metric == "auc" else "r2"
    n = len(rows.positions)
    if n < MIN_POSITIONS:
        raise ValueError(
            f"a probe needs at least {MIN_POSITIONS} positions, got {n} ({rows.num_steps} steps, every "
            f"{rows.stride}th kept); give a longer text"
        )
    n_test = max(1, round(heldout * n))
    n_train = n - n_test
    y = values[rows.positions]
    _check_parts(y, n_train, label, rows.positions, "the feature")
    draws = (control_task(rows.types, y, seed=seed + draw) for draw in range(_CONTROL_DRAWS))
    control = next((c for c in draws if _varies(c[:n_train]) and _varies(c[n_train:])), None)
    if control is None:
        raise ValueError(
            f"no control task for {label!r} varies in both the training part and the held-out tail after "
            f"{_CONTROL_DRAWS} draws: too few character types ({len(np.unique(rows.types))}) for this feature"
        )
    x = standardize(rows.x.copy() if rows is trace else rows.x, n_train)  # rows given are the caller's to keep
    train, test = x[:n_train], x[n_train:]
    y, control = fit_targets(y, metric, n_train), fit_targets(control, metric, n_train)

    validation: list[tuple[float, float]] = []
    if len(alphas) > 1:
        n_fit = n_train - max(1, round(heldout * n_train))
        _check_parts(y[:n_train], n_fit, label, rows.positions, "the feature (validation slice)")
        for a in alphas:
            w, b = fit_elastic_net(train[:n_fit], y[:n_fit], metric, a, l1_ratio)
            validation.append((a, _score(metric, y[n_fit:n_train], train[n_fit:] @ w + b)))
        best = max(s for _, s in validation)
        alphas = [next(a for a, s in validation if s >= best - ALPHA_SLACK)]  # largest first: the sparsest
    chosen = alphas[0]

    def held_out_score(columns: list[int] | None, labels: np.ndarray) -> float:
        """The held-out score of the probe refitted on ``columns`` (``None``: all) with ``labels``."""
        part, tail = (train, test) if columns is None else (train[:, columns], test[:, columns])
        w, b = fit_elastic_net(part, labels[:n_train], metric, chosen, l1_ratio)
        return _score(metric, labels[n_train:], tail @ w + b)

    w, b = fit_elastic_net(train, y[:n_train], metric, chosen, l1_ratio)
    score = _score(metric, y[n_train:], test @ w + b)
    order = [int(i) for i in np.argsort(-np.abs(w), kind="stable") if w[i] != 0]
    chance = 0.5 if metric == "auc" else 0.0
    target = chance + NEEDED_SHARE * (score - chance)
    curve = {len(order): score} if order else {}
    needed = None
    for size in _grid(len(order)):
        curve[size] = held_out_score(order[:size], y)
    if order and score > chance:
        needed = min(size for size, s in curve.items() if s >= target)
        below = max((size for size in curve if size < needed), default=0)
        while needed - below > 1:  # bisection between the last size below the target and the first above
            middle = (needed + below) // 2
            curve[middle] = held_out_score(order[:middle], y)
            needed, below = (middle, below) if curve[middle] >= target else (needed, middle)
    best_index, best_single = _best_single(train, test, y, metric, n_train)
    control_score = held_out_score(None, control)
    return Probe(
        feature=label, metric=metric, quantity=quantity, layers=tuple(rows.layers), score=score,
        units=tuple((*rows.owners[i], float(w[i])) for i in order), units_needed=needed, target=target,
        curve=tuple(sorted(curve.items())), best_single=best_single, best_unit=rows.owners[best_index],
        control_score=control_score, selectivity=score - control_score, alpha=chosen, l1_ratio=l1_ratio,
        solver=SOLVERS[metric], num_train=n_train, num_heldout=n_test, num_steps=rows.num_steps,
        stride=rows.stride, num_units=x.shape[1], seed=seed, validation=tuple(validation),
    )  # fmt: skip


def _check_options(heldout: float, max_rows: int, alpha: Any, l1_ratio: float, seed: int) -> list[float]:
    """The alphas to try, largest first, once every option is checked."""
    if isinstance(heldout, bool) or not isinstance(heldout, int | float) or not 0 < heldout < 1:
        raise ValueError(f"`heldout` must be a share between 0 and 1 (exclusive), got {heldout!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < MIN_POSITIONS:
        raise ValueError(f"`max_rows` must be an integer >= {MIN_POSITIONS}, got {max_rows!r}")
    alphas = [alpha] if isinstance(alpha, int | float) else list(alpha)
    if not alphas or any(isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a < math.inf for a in alphas):
        raise ValueError(f"`alpha` must be a positive number or a non-empty list of them, got {alpha!r}")
    if isinstance(l1_ratio, bool) or not isinstance(l1_ratio, int | float) or not 0 < l1_ratio <= 1:
        raise ValueError(f"`l1_ratio` must be in (0, 1] (1 is the lasso; 0 would select no units), got {l1_ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    return sorted({float(a) for a in alphas}, reverse=True)


def _varies(values: np.ndarray) -> bool:
    return len(values) > 0 and bool(values.min() != values.max())


def _check_parts(y: np.ndarray, n_train: int, label: str, positions: np.ndarray, what: str) -> None:
    for part, rows in (("training part", slice(0, n_train)), ("held-out tail", slice(n_train, len(y)))):
        if not _varies(y[rows]):
            span = f"positions {positions[rows][0]}-{positions[rows][-1]}" if len(y[rows]) else "no positions"
            value = y[rows][0].item() if len(y[rows]) else None
            raise ValueError(
                f"{what} {label!r} is constant ({value!r}) on the {part} ({span}): nothing to fit or score there; "
                "give a text where it varies in both, or change `heldout`"
            )


def _score(metric: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    if metric == "auc":
        return float(auc_columns(torch.from_numpy(predicted.astype(np.float32)[:, None]), truth)[0])
    truth = truth.astype(np.float64)
    return float(1.0 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def _best_single(train: np.ndarray, test: np.ndarray, y: np.ndarray, metric: str, n_train: int) -> tuple[int, float]:
    """The column best on the training part, and its held-out score (orientation-free AUC, or the R² of the line
    fitted on the training part: with both standardised there, its slope is r)."""
    if metric == "auc":
        raw = auc_columns(torch.from_numpy(train), y[:n_train])
        best = int(np.argmax(np.maximum(raw, 1 - raw)))
        held = float(auc_columns(torch.from_numpy(np.ascontiguousarray(test[:, [best]])), y[n_train:])[0])
        return best, max(held, 1 - held)
    r = pearson_columns(torch.from_numpy(train), y[:n_train].astype(np.float64))
    best = int(np.argmax(np.abs(r)))
    return best, _score(metric, y[n_train:], r[best] * test[:, best].astype(np.float64))


def _grid(count: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 11, 16, ... (steps of about sqrt(2)) below ``count``."""
    sizes: list[int] = []
    size = 1.0
    while round(size) < count:
        if not sizes or round(size) != sizes[-1]:
            sizes.append(round(size))
        size *= math.sqrt(2)
    return sizes
