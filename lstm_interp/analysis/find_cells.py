"""``find_cells``: rank every unit of a trace by how well it tracks a feature of the text (Karpathy et al. 2015, §4.1).

Scores, per unit, between a quantity (the cell state by default) and a feature with one value per character:

- continuous feature: Pearson correlation ``r``; ``score = |r|``, ``sign`` = the sign of ``r``;
- binary feature: ROC AUC of the unit's value as a detector of the positions where the feature is 1, i.e.
  ``P(x_pos > x_neg) + P(x_pos = x_neg) / 2`` (Mann–Whitney U with average ranks for ties);
  ``score = max(AUC, 1 - AUC)`` and ``sign`` is +1 when the unit is higher where the feature is 1, -1 when lower.

A unit that is constant over the trace has no association: ``|r| = 0`` and ``AUC = 0.5`` (every pair tied), sign 0.
A constant *feature* leaves both undefined, and is an error rather than a table of NaNs.

Both are vectorised over units (no Python loop over them). Pearson: products of the centred activations (float64,
in chunks of time steps) with the centred feature. AUC: one sort per block of columns, on a thread pool. Each value
becomes an integer key in the floats' order whose lowest bit is replaced by the class, so the sorted keys give the
Mann–Whitney U directly from the positions of the class-1 keys, with no argsort; values held by both classes are
found next to each other in the sorted keys and their pairs counted 1/2. Giving up that lowest bit means float32
values within one unit in the last place (1.2e-7 relative) count as ties. float16 and bfloat16 traces need no sort:
with at most 65,536 distinct values, per-value counts give the exact AUC, about 3x faster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lstm_interp.features import FEATURE_KINDS, Feature, FeatureKind, compute_feature, get_feature
from lstm_interp.features.feature_values import check_feature_values
from lstm_interp.tracing import Trace

FeatureLike = str | Feature | Callable[[str], Any] | np.ndarray | Tensor | Sequence[float]
_BLOCK = 32  # columns per work item: (32, T) float32 keys of a 100k-character trace are 12.8 MB
_CHUNK = 8192  # time steps per chunk of the correlation: (8192, 512) float32 is 16 MB


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

    Example::

        >>> row = CellScore("layers.0", 5, "inside_quotes", "auc", score=0.9, sign=-1, value=0.1)
        >>> round(row.strength, 2)
        0.8
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

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data: the one row format of ``cells.json``, the monitor's ``index.json`` and the
        HTML report's feature matches (``layer``, ``unit``, ``feature``, ``metric``, ``score``, ``sign``,
        ``value``, ``quantity``)."""
        return asdict(self)

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
        header = ["#", "layer", "unit", "feature", "metric", "score", "sign"]
        mixed = len({row.metric for row in self.rows}) > 1
        if mixed:  # only then do the two scales need one common column to compare them
            header.append("strength")
        body = []
        for rank, row in enumerate(self.rows, 1):
            cells = [str(rank), row.layer, str(row.unit), row.feature, row.metric, f"{row.score:.4f}"]
            cells.append({1: "+", -1: "-", 0: "0"}[row.sign])
            body.append([*cells, f"{row.strength:.4f}"] if mixed else cells)
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
) -> CellTable:
    """Rank every (layer, unit) of ``trace`` by how well its ``quantity`` tracks ``feature``.

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

    Returns:
        A :class:`CellTable`, best unit first (ties in score keep layer, then unit, order).

    Raises:
        UnknownFeatureError: for an unknown feature name (the message lists the known ones).
        KeyError: if the trace lacks ``quantity`` for one of the layers.
        ValueError: a feature whose length differs from the trace's, a constant feature, a trace without text for
            a named feature, non-finite activations, a bad ``top``, ``kind`` or layer.

    Example::

        >>> tr = trace(model, text)  # doctest: +SKIP
        >>> find_cells(tr, "inside_quotes", top=5)  # doctest: +SKIP
        >>> find_cells(tr, "position_in_line", quantity="hidden", layers=["layers.1"])  # doctest: +SKIP
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"`top` must be a positive integer or None, got {top!r}")
    names = _resolve_layers(trace, layers)
    activations = [trace[f"{layer}.{quantity}"] for layer in names]
    values, own_label, metric = _feature_values(trace, feature, kind, activations[0].shape[0])
    label = label or own_label
    check_feature_values(values, label, activations[0].shape[0])
    raw = np.concatenate(
        [_score_columns(x, values, metric, f"{layer}.{quantity}") for layer, x in zip(names, activations, strict=True)]
    )
    score = np.maximum(raw, 1.0 - raw) if metric == "auc" else np.abs(raw)
    owner = np.concatenate([np.full(x.shape[1], i) for i, x in enumerate(activations)])
    unit = np.concatenate([np.arange(x.shape[1]) for x in activations])
    order = np.argsort(-score, kind="stable")[:top]
    rows = tuple(_row(names[owner[i]], int(unit[i]), label, metric, raw[i], quantity) for i in order)
    title = f"units of {', '.join(names)} whose {quantity} tracks {label!r} ({metric})"
    return CellTable(rows, quantity, title, activations[0].shape[0])


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


def _row(layer: str, unit: int, feature: str, metric: str, value: float, quantity: str) -> CellScore:
    if metric == "auc":
        score, sign = max(value, 1.0 - value), int(np.sign(value - 0.5))
    else:
        score, sign = abs(value), int(np.sign(value))
    return CellScore(layer, unit, feature, metric, float(score), sign, float(value), quantity)


def _score_columns(x: Tensor, values: np.ndarray, metric: str, name: str) -> np.ndarray:
    """(H,) the AUC or Pearson r of every column of the (T, H) tensor ``x`` with the feature ``values``."""
    raw = _pearson_columns(x, values) if metric == "pearson" else _auc_columns(x, values)
    bad = np.flatnonzero(np.isnan(raw)).tolist()
    if bad:
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ValueError(f"{name} has NaN or infinite values in units {bad[:10]}{more}; scores need finite activations")
    return raw


@np.errstate(invalid="ignore", divide="ignore", over="ignore")  # a non-finite unit becomes NaN, reported by the caller
def _pearson_columns(x: Tensor, values: np.ndarray) -> np.ndarray:
    """(H,) Pearson r of each column of ``x`` (T, H) with ``values`` (T,): 0 if constant, NaN if not finite."""
    T, H = x.shape
    target = values - values.mean()
    low, high = np.full(H, np.inf), np.full(H, -np.inf)
    total, covariance, squares = np.zeros(H), np.zeros(H), np.zeros(H)
    # numpy reduces over rows across all columns at once (torch's dim-0 reductions are ~20x slower here), in
    # chunks of time steps so that no float64 copy of the whole layer is made.
    for i in range(0, T, _CHUNK):
        chunk = _numpy(x[i : i + _CHUNK])
        np.minimum(low, chunk.min(axis=0), out=low)
        np.maximum(high, chunk.max(axis=0), out=high)
        total += chunk.sum(axis=0)
    mean = total / T
    for i in range(0, T, _CHUNK):
        # float64 products of centred values: float32 sums of 8192 terms were off by 3e-6 on a perfect match.
        centred = _numpy(x[i : i + _CHUNK]) - mean
        covariance += target[i : i + _CHUNK] @ centred
        centred *= centred
        squares += centred.sum(axis=0)
    r = np.clip(covariance / np.sqrt(squares * (target @ target)), -1.0, 1.0)
    r[low == high] = 0.0  # exact, unlike a variance that rounds to 1e-17 instead of 0
    r[~(np.isfinite(low) & np.isfinite(high))] = np.nan
    return r


def _numpy(x: Tensor) -> np.ndarray:
    """``x`` as a float32 (or float64) numpy array; numpy converts float16 faster than torch does on the CPU."""
    if x.dtype == torch.float16:
        return x.numpy().astype(np.float32)
    return x.numpy() if x.dtype in (torch.float32, torch.float64) else x.float().numpy()


def _auc_columns(x: Tensor, labels: np.ndarray) -> np.ndarray:
    """(H,) ROC AUC of each column of ``x`` (T, H) as a detector of ``labels`` (T,): NaN if not finite."""
    sixteen_bits = x.dtype in (torch.float16, torch.bfloat16)
    dtype = x.dtype if sixteen_bits else torch.float32
    # Rows of the transposed layer are contiguous columns: one blocked transpose beats a strided copy per block.
    columns = torch.empty(x.shape[::-1], dtype=dtype).copy_(x.T)
    columns += 0.0  # -0.0 becomes 0.0, so that the two tie
    int_type = torch.int16 if sixteen_bits else torch.int32
    bits = columns.view(int_type).numpy()
    limits = _float_keys(torch.tensor([-np.inf, np.inf], dtype=dtype).view(int_type).numpy())
    kernel = _auc_counts if sixteen_bits else _auc_sorted
    starts = range(0, bits.shape[0], _BLOCK)
    workers = max(1, min(len(starts), torch.get_num_threads(), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # numpy's sorts and bincounts release the GIL
        return np.concatenate(list(pool.map(lambda i: kernel(bits[i : i + _BLOCK], labels, limits), starts)))


def _float_keys(bits: np.ndarray) -> np.ndarray:
    """Turn IEEE float bit patterns (int16 or int32), in place, into signed integers in the floats' order."""
    sign_shift = bits.dtype.itemsize * 8 - 1
    bits ^= (bits >> sign_shift) & np.array(np.iinfo(bits.dtype).max, dtype=bits.dtype)  # negatives: larger is lower
    return bits


def _auc_sorted(bits: np.ndarray, labels: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """(B,) ROC AUC of each row of float32 ``bits`` (B, T), as int32, for ``labels`` (T,); ties count 1/2.

    ``bits`` is overwritten; ``limits`` are the keys of -inf and +inf.
    """
    T = bits.shape[1]
    n1 = int(labels.sum())
    tagged = _float_keys(bits)
    tagged &= np.int32(-2)
    tagged |= labels.astype(np.int32)  # the class rides in the lowest bit; at equal value, 0s sort first
    tagged.sort(axis=1)
    # With 0s first at ties, the i-th 1 (0-based) at sorted position p is above exactly p - i zeros. The sum of
    # the positions is an integer product (exact, and 4x faster here than collecting them with flatnonzero).
    positions = np.einsum("ij,j->i", tagged & 1, np.arange(T, dtype=np.int64))
    u = positions - n1 * (n1 - 1) / 2
    # Pairs tied in value were all counted as wins; each such pair should count 1/2. A value held by both classes
    # shows as a run of its 0-tagged key followed by a run of its 1-tagged key: neighbours differing in bit 0 only.
    boundaries = (tagged[:, 1:] ^ tagged[:, :-1]) == 1
    if boundaries.any():
        u -= _tied_pairs(tagged, boundaries) / 2
    auc = u / (n1 * (T - n1))
    # Sorted, a row's extremes tell whether it holds an infinity or a NaN (their keys lie beyond the infinities').
    auc[(tagged[:, 0] <= limits[0]) | (tagged[:, -1] >= limits[1])] = np.nan
    return auc


def _tied_pairs(tagged: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(B,) per sorted row of class-tagged keys, the number of (class 0, class 1) pairs of equal value.

    ``boundaries[r, j]`` marks where row ``r``'s run of 0-tagged keys of a value ends (at ``j``) and its run of
    1-tagged keys begins; the two runs' lengths come from binary searches, so the cost grows with the number of
    shared values, not with the trace.
    """
    B, T = tagged.shape
    rows, ends = np.nonzero(boundaries)
    # Offsetting each row beyond the int32 range makes the whole block one sorted array for np.searchsorted.
    flat = (tagged.astype(np.int64) + (np.arange(B, dtype=np.int64) << 33)[:, None]).ravel()
    split = rows * T + ends + 1  # the first 1-tagged key of the value
    zeros_start = np.searchsorted(flat, flat[split - 1], side="left")
    ones_end = np.searchsorted(flat, flat[split], side="right")
    return np.bincount(rows, weights=(split - zeros_start) * (ones_end - split).astype(np.float64), minlength=B)


def _auc_counts(bits: np.ndarray, labels: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """(B,) exact ROC AUC of each row of 16-bit float ``bits`` (B, T), from per-value counts instead of a sort."""
    B, T = bits.shape
    keys = _float_keys(bits)
    bins = 1 << 16
    index = (keys.astype(np.int64) + (1 << 15)) + (np.arange(B, dtype=np.int64) * bins)[:, None]
    ones = np.bincount(index[:, labels].ravel(), minlength=B * bins).reshape(B, bins)
    zeros = np.bincount(index.ravel(), minlength=B * bins).reshape(B, bins) - ones
    zeros_below = np.cumsum(zeros, axis=1) - zeros
    n1 = int(labels.sum())
    auc = (ones * (zeros_below + zeros / 2)).sum(axis=1) / (n1 * (T - n1))
    auc[(keys.min(axis=1) <= limits[0]) | (keys.max(axis=1) >= limits[1])] = np.nan
    return auc
