"""``find_cells``: rank every unit of a trace by how well it tracks a feature of the text (Karpathy et al. 2015, §4.1).

Scores, per unit, between a quantity (the cell state by default) and a feature with one value per character:

- continuous feature: Pearson correlation ``r``; ``score = |r|``, ``sign`` = the sign of ``r``;
- binary feature: ROC AUC of the unit's value as a detector of the positions where the feature is 1, i.e.
  ``P(x_pos > x_neg) + P(x_pos = x_neg) / 2`` (Mann–Whitney U with average ranks for ties);
  ``score = max(AUC, 1 - AUC)`` and ``sign`` is +1 when the unit is higher where the feature is 1, -1 when lower.

A unit that is constant over the trace has no association: ``|r| = 0`` and ``AUC = 0.5`` (every pair tied), sign 0.
A constant *feature* leaves both undefined, and is an error rather than a table of NaNs.

**The ranking rule.** AUC and r are rank and correlation statistics: a cell state pinned at -1 that is -1.00 on one
side of a feature and -0.97 on the other scores an AUC near 1, yet its picture is one solid red band. So every row
also carries ``effect``, how far the unit's colour moves with the feature on the -1..+1 scale the pictures show
(:mod:`~lstm_interp.analysis.visible_effect`: the difference of the displayed means for a binary feature, slope
times the 5-95 percentile spread for a continuous one), and units are ranked:

1. with controls (below): visible units that beat every control, best worst-case score *given* a control first;
2. the other units that **visibly switch** (``|effect| >= min_effect``, default 0.5, a quarter of the colour
   scale), by ``score``;
3. the rest, by ``score``. Ties keep layer, then unit, order.

Every consumer that picks a unit to show (the monitor, the HTML report, the explorer, the model cards) takes the
first row of this order, so no saturated unit is shown when one that switches exists. ``min_effect=0`` ranks by
score alone.

**Controls.** A feature can imply another: an if condition lies inside parentheses. The returned rows are also
scored against each control (:mod:`~lstm_interp.analysis.control_scores`): the unit's score on the control, and its
score on the feature *given* the control. :attr:`CellScore.beats_controls` says whether the unit is a cell of the
feature rather than of the control (it scores higher on the feature than on the control, AUC >= 0.75 or partial
|r| >= 0.5 given it, and a visible difference given it); those come first.

The kernels (vectorised over units) live in :mod:`lstm_interp.analysis._scores`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from lstm_interp.analysis._scores import score_columns
from lstm_interp.analysis.control_scores import ControlScore, check_control, control_scores, usable_controls
from lstm_interp.analysis.visible_effect import MIN_EFFECT, visible_effect
from lstm_interp.features import FEATURE_KINDS, Feature, FeatureKind, compute_feature, get_feature
from lstm_interp.features.feature_values import check_feature_values
from lstm_interp.tracing import Trace

FeatureLike = str | Feature | Callable[[str], Any] | np.ndarray | Tensor | Sequence[float]
ControlsLike = str | Sequence[str] | Mapping[str, np.ndarray | Sequence[bool]] | None


@dataclass(frozen=True)
class CellScore:
    """How well one unit tracks one feature.

    Args:
        layer: layer name, e.g. ``"layers.1"``.
        unit: unit index within the layer.
        feature: feature name (``"<array>"`` for a precomputed one).
        metric: ``"auc"`` (binary feature) or ``"pearson"`` (continuous feature).
        score: ``max(AUC, 1 - AUC)`` or ``|r|``: 0.5 / 0 is chance, 1 is a perfect detector / linear match.
        sign: +1 when the unit is higher where the feature is higher, -1 when lower, 0 for no association.
        value: the raw AUC or the signed ``r``.
        quantity: the traced quantity that was scored (``"cell"``, ``"hidden"``, ...).
        effect: how far the displayed value moves with the feature, -2..+2 on the -1..+1 colour scale
            (:mod:`~lstm_interp.analysis.visible_effect`); NaN where it was not measured.
        controls: the unit's :class:`~lstm_interp.analysis.control_scores.ControlScore` on each control.
        min_effect: the ``|effect|`` from which the unit counts as visibly switching.

    Example::

        >>> row = CellScore("layers.0", 5, "inside_quotes", "auc", score=0.9, sign=-1, value=0.1, effect=-0.04)
        >>> round(row.strength, 2), row.visible  # a high AUC, but pinned: the picture would be one flat band
        (0.8, False)
        >>> row.to_dict()["quantity"]
        'cell'
    """

    layer: str
    unit: int
    feature: str
    metric: str
    score: float
    sign: int
    value: float
    quantity: str = "cell"
    effect: float = math.nan
    controls: tuple[ControlScore, ...] = ()
    min_effect: float = MIN_EFFECT

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data: the one row format of ``cells.json``, the monitor's ``index.json`` and the
        HTML report's feature matches (``layer``, ``unit``, ``feature``, ``metric``, ``score``, ``sign``,
        ``value``, ``quantity``, ``effect``, ``visible``, and ``controls`` with ``beats_controls`` when scored)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("controls", "min_effect")}
        data["effect"] = None if math.isnan(self.effect) else self.effect
        data["visible"] = self.visible
        if self.controls:
            data["controls"] = [control.to_dict() for control in self.controls]
            data["beats_controls"] = self.beats_controls
        return data

    @property
    def visible(self) -> bool:
        """Whether the unit visibly switches with the feature: ``|effect| >= min_effect`` (True if not measured)."""
        return math.isnan(self.effect) or abs(self.effect) >= self.min_effect

    @property
    def beats_controls(self) -> bool:
        """Whether the unit is a cell of the feature rather than of each control (``ControlScore.beaten_by``)."""
        return all(control.beaten_by(self.score) for control in self.controls)

    @property
    def strength(self) -> float:
        """The score on one 0-to-1 scale for both metrics: ``|r|``, or ``2 * score - 1`` (rank-biserial) for AUC."""
        return self.score if self.metric == "pearson" else 2 * self.score - 1


@dataclass(frozen=True)
class CellTable:
    """Ranked :class:`CellScore` rows, best first, from :func:`find_cells` or :func:`explain_unit`.

    Args:
        rows: the rows, best first.
        quantity: the traced quantity that was scored (``"cell"``, ``"hidden"``, ...).
        title: what was ranked, shown above the table.
        num_steps: characters in the trace.
        skipped: features left out because they were constant on this text (:func:`explain_unit`).

    Example::

        >>> table = find_cells(tr, "inside_quotes", top=3)  # doctest: +SKIP
        >>> table[0].layer, table[0].unit, round(table[0].score, 3)  # doctest: +SKIP
        ('layers.1', 37, 0.982)
        >>> print(table.to_markdown())  # doctest: +SKIP
    """

    rows: tuple[CellScore, ...]
    quantity: str
    title: str
    num_steps: int
    skipped: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[CellScore]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> CellScore:
        return self.rows[index]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: the table's fields and one dict per row."""
        return {
            "title": self.title,
            "quantity": self.quantity,
            "num_steps": self.num_steps,
            "skipped": list(self.skipped),
            "rows": [row.to_dict() for row in self.rows],
        }

    def _columns(self) -> tuple[list[str], list[list[str]]]:
        header = ["#", "layer", "unit", "feature", "metric", "score", "sign", "effect"]
        mixed = len({row.metric for row in self.rows}) > 1
        if mixed:  # only then do the two scales need one common column to compare them
            header.append("strength")
        controls = [c.control for c in self.rows[0].controls] if self.rows else []
        for name in controls:
            header += [name, f"given {name}"]
        body = []
        for rank, row in enumerate(self.rows, 1):
            cells = [str(rank), row.layer, str(row.unit), row.feature, row.metric, f"{row.score:.4f}"]
            cells.append({1: "+", -1: "-", 0: "0"}[row.sign])
            cells.append("" if math.isnan(row.effect) else f"{row.effect:+.2f}" + ("" if row.visible else " flat"))
            if mixed:
                cells.append(f"{row.strength:.4f}")
            for control in row.controls:
                cells += [f"{control.score:.4f}", f"{control.partial:.4f}"]
            body.append(cells)
        return header, body

    def to_markdown(self) -> str:
        """A Markdown table, one line per row, under a bold title line."""
        header, body = self._columns()
        lines = [f"**{self.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        if self.skipped:
            lines += ["", f"Constant on this text, not scored: {', '.join(self.skipped)}"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        header, body = self._columns()
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = [f"CellTable({self.title}; {len(self.rows)} rows, {self.num_steps} steps)"]
        lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in [header, *body]]
        return "\n".join(lines)


def find_cells(
    trace: Trace,
    feature: FeatureLike,
    quantity: str = "cell",
    top: int | None = 10,
    *,
    layers: str | int | Sequence[str | int] | None = None,
    kind: FeatureKind | None = None,
    label: str | None = None,
    min_effect: float = MIN_EFFECT,
    controls: ControlsLike = None,
) -> CellTable:
    """Rank every (layer, unit) of ``trace`` by how well its ``quantity`` tracks ``feature``, visible units first.

    The order is the module's ranking rule: units whose displayed value moves by at least ``min_effect`` with the
    feature, by score, then the others, by score.

    Args:
        trace: a trace of a text (a name or callable feature needs ``trace.text``).
        feature: a registered feature name, a :class:`~lstm_interp.features.Feature`, a ``text -> array``
            callable, or precomputed values (array, tensor or list) of one value per traced character.
        quantity: the per-layer quantity to score: ``"cell"``, ``"hidden"``, ``"forget_gate"``, ...
        top: how many rows to return (``None``: every unit).
        layers: the layers to search, by name or index (default: all).
        kind: ``"binary"`` (AUC) or ``"continuous"`` (Pearson), overriding the feature's own kind; by default a
            registered feature's kind, else binary for bool values and continuous for numbers.
        label: the feature's name in the rows and the title (default: the registered name, the callable's
            ``__name__``, or ``"<array>"`` for precomputed values).
        min_effect: the ``|effect|`` (on the -1..+1 colour scale) from which a unit counts as visibly switching;
            ``0`` ranks by score alone.
        controls: registered binary features to score the returned rows against (see
            :mod:`~lstm_interp.analysis.control_scores`). ``None``: the feature's own
            :attr:`~lstm_interp.features.Feature.controls` that vary on this text (the others are listed in
            ``skipped``); ``()``: none; a mapping ``name -> values`` gives precomputed controls (one bool per step).

    Returns:
        A :class:`CellTable`, best unit first (see the ranking rule; ties keep layer, then unit, order).

    Raises:
        UnknownFeatureError: for an unknown feature name (the message lists the known ones).
        KeyError: if the trace lacks ``quantity`` for one of the layers.
        ValueError: a feature whose length differs from the trace's, a constant feature, a trace without text for
            a named feature, non-finite activations, a bad ``top``, ``kind``, layer or ``min_effect``; a control
            that is not binary, is constant on the text (when named explicitly) or equals the feature.

    Example::

        >>> tr = trace(model, text)  # doctest: +SKIP
        >>> find_cells(tr, "inside_quotes", top=5)  # doctest: +SKIP
        >>> find_cells(tr, "inside_if_condition", controls=["inside_parens"])[0].beats_controls  # doctest: +SKIP
        >>> find_cells(tr, "position_in_line", quantity="hidden", layers=["layers.1"])  # doctest: +SKIP
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"`top` must be a positive integer or None, got {top!r}")
    if isinstance(min_effect, bool) or not isinstance(min_effect, int | float) or not 0 <= min_effect <= 2:
        raise ValueError(f"`min_effect` must be a number in [0, 2] (the colour scale spans 2), got {min_effect!r}")
    names = _resolve_layers(trace, layers)
    activations = [trace[f"{layer}.{quantity}"] for layer in names]
    num_steps = activations[0].shape[0]
    values, own_label, metric = _feature_values(trace, feature, kind, num_steps)
    label = label or own_label
    check_feature_values(values, label, num_steps)
    chosen, skipped = _controls(trace, feature, controls, values, label)
    raw = np.concatenate(
        [score_columns(x, values, metric, f"{layer}.{quantity}") for layer, x in zip(names, activations, strict=True)]
    )
    effect = np.concatenate([visible_effect(x, values, metric, quantity) for x in activations])
    score = np.maximum(raw, 1.0 - raw) if metric == "auc" else np.abs(raw)
    sign = np.sign(raw - 0.5) if metric == "auc" else np.sign(raw)
    owner = np.concatenate([np.full(x.shape[1], i) for i, x in enumerate(activations)])
    unit = np.concatenate([np.arange(x.shape[1]) for x in activations])
    # Every unit against every control: the order depends on who beats them.
    per_unit: list[list[ControlScore]] = [[] for _ in range(len(score))]
    for c_label, c_values in chosen:
        offset = 0
        for layer, x in zip(names, activations, strict=True):
            signs = sign[offset : offset + x.shape[1]]
            scores = control_scores(x, values, c_values, metric, signs, c_label, f"{layer}.{quantity}", quantity,
                                    min_effect)
            for k, control in enumerate(scores):
                per_unit[offset + k].append(control)
            offset += x.shape[1]
    order = ranking_order(score, effect, per_unit, min_effect)[:top]
    rows = [
        _row(names[owner[i]], int(unit[i]), label, metric, raw[i], quantity, effect[i], min_effect, per_unit[i])
        for i in order
    ]
    title = f"units of {', '.join(names)} whose {quantity} tracks {label!r} ({metric})"
    return CellTable(tuple(rows), quantity, title, num_steps, tuple(skipped))


def ranking_order(
    score: np.ndarray, effect: np.ndarray, per_unit: Sequence[Sequence[ControlScore]], min_effect: float
) -> np.ndarray:
    """The ranking rule as an order of units: tier 0, visible units that beat every control, by their worst score
    given a control; tier 1, the other visible units; tier 2, the rest; both by score. The sort is stable: ties
    keep unit order. Units without controls (``per_unit`` entries empty) rank in tiers 1 and 2 only."""
    visible = np.abs(effect) >= min_effect
    beats = np.array([bool(c) and all(x.beaten_by(s) for x in c) for c, s in zip(per_unit, score, strict=True)])
    partial = np.array([min((x.partial for x in c), default=0.0) for c in per_unit])
    tier = np.where(visible & beats, 0, np.where(visible, 1, 2))
    return np.lexsort((-np.where(tier == 0, partial, score), tier))


def _controls(
    trace: Trace, feature: FeatureLike, controls: ControlsLike, values: np.ndarray, label: str
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The controls to score, as (name, values) pairs, and the registered ones left out, with why; controls named
    explicitly must all be usable (an error otherwise)."""
    if controls is None:  # the feature's registered controls that can be scored here; the others are listed
        if not isinstance(feature, str | Feature) or trace.text is None:
            return [], []
        usable, why = usable_controls(get_feature(feature), values, trace.text)
        return list(usable.items()), [f"control {name} ({reason})" for name, reason in why.items()]
    if isinstance(controls, Mapping):  # precomputed values, named by the keys
        given = [(str(name), np.asarray(v)) for name, v in controls.items()]
    else:
        names = [controls] if isinstance(controls, str) else list(controls)
        if names and trace.text is None:
            raise ValueError(f"this trace holds no text (it was traced from ids): pass controls {names} precomputed")
        given = []
        for name in names:
            control = get_feature(name)  # an unknown name fails here, listing the registered features
            if control.kind != "binary":
                raise ValueError(f"control {control.name!r} is {control.kind}; a control must be a binary feature")
            given.append((control.name, compute_feature(control, trace.text or "")))
    chosen = []
    for name, c_values in given:
        if name == label:
            raise ValueError(f"control {name!r} is the feature itself; a control must be another feature")
        if c_values.shape != values.shape or not (c_values.dtype == np.bool_ or np.isin(c_values, (0, 1)).all()):
            raise ValueError(
                f"control {name!r} must be {len(values)} binary values, one per step, got {c_values.dtype} "
                f"{c_values.shape}"
            )
        c_values = c_values.astype(bool)
        check_control(values, c_values, label, name)
        chosen.append((name, c_values))
    return chosen, []


def row_rank(row: Mapping[str, Any]) -> tuple[int, float]:
    """The sort key of the ranking rule for a ``CellScore.to_dict()`` row, to order rows of different features.

    Tier 0: visible and beating its controls (or without any); 1: visible, beaten by a control; 2: flat. Within a
    tier, strength (``|r|``, or ``2 * AUC - 1``). A row without the flags (an index file written before them)
    counts as visible and unbeaten. The report's opening match and the explorer's feature list sort by it.
    """
    tier = 2 if row.get("visible") is False else 1 if row.get("beats_controls") is False else 0
    score = float(row.get("score", 0.0))
    return tier, -(2 * score - 1 if row.get("metric") == "auc" else score)


# ---------------------------------------------------------------------------- helpers shared with explain_unit
def _resolve_layers(trace: Trace, layers: str | int | Sequence[str | int] | None) -> list[str]:
    if layers is None:
        return list(trace.layer_names)
    chosen = [layers] if isinstance(layers, str | int) else list(layers)
    if not chosen:
        raise ValueError(f"`layers` is empty; the trace's layers are {trace.layer_names}")
    return list(dict.fromkeys(_resolve_layer(trace, layer) for layer in chosen))  # each layer once, in order


def _resolve_layer(trace: Trace, layer: str | int) -> str:
    if isinstance(layer, int) and not isinstance(layer, bool) and -trace.num_layers <= layer < trace.num_layers:
        return trace.layer_names[layer]
    if isinstance(layer, str) and layer in trace.layer_names:
        return layer
    raise ValueError(f"unknown layer {layer!r}; the trace's layers are {trace.layer_names} (or their indices)")


def _feature_values(
    trace: Trace, feature: FeatureLike, kind: FeatureKind | None, num_steps: int
) -> tuple[np.ndarray, str, str]:
    """The feature's values on the trace's text, its label, and the metric (``"auc"`` or ``"pearson"``)."""
    if kind is not None and kind not in FEATURE_KINDS:
        raise ValueError(f"`kind` must be one of {list(FEATURE_KINDS)} or None, got {kind!r}")
    if isinstance(feature, str | Feature) or callable(feature):
        if isinstance(feature, str | Feature):
            feature = get_feature(feature)  # unknown names fail here, with the known ones listed
            label, own_kind = feature.name, feature.kind
        else:
            label, own_kind = getattr(feature, "__name__", "<callable>"), None
        if trace.text is None:
            raise ValueError(f"this trace holds no text (it was traced from ids); pass {label!r} precomputed")
        values = compute_feature(feature, trace.text)
    else:
        tensor_like = feature.detach().cpu().numpy() if isinstance(feature, Tensor) else feature
        values, label, own_kind = np.asarray(tensor_like), "<array>", None
        if values.ndim != 1 or not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise ValueError(f"a precomputed feature must be 1-D numbers or bools, got {values.dtype} {values.shape}")
    kind = kind or own_kind or ("binary" if values.dtype == np.bool_ else "continuous")
    if kind == "binary":
        if values.dtype != np.bool_ and not np.isin(values, (0, 1)).all():
            raise ValueError(f"binary feature {label!r} has values other than 0 and 1: {np.unique(values)[:5]}")
        return values.astype(bool), label, "auc"
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"feature {label!r} has {int((~np.isfinite(values)).sum())} non-finite values")
    return values, label, "pearson"


def _row(
    layer: str,
    unit: int,
    feature: str,
    metric: str,
    value: float,
    quantity: str,
    effect: float = math.nan,
    min_effect: float = MIN_EFFECT,
    controls: Sequence[ControlScore] = (),
) -> CellScore:
    if metric == "auc":
        score, sign = max(value, 1.0 - value), int(np.sign(value - 0.5))
    else:
        score, sign = abs(value), int(np.sign(value))
    return CellScore(
        layer, unit, feature, metric, float(score), sign, float(value), quantity, float(effect), tuple(controls),
        min_effect,
    )
