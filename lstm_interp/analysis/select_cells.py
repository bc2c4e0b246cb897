"""``select_cells``: LSTMVis's selection rule, the units that switch on exactly over a span of the text.

Strobelt et al. (2017), LSTMVis: the user brushes a span of the text, and the tool selects the cells whose on/off
pattern over the span and its surroundings is exactly *off for ``before`` steps, on for every step of the span, off
for ``after`` steps* (LSTMVis's "zero constraints" left and right, 1 and 0 by default). The rule followed is
``LSTMController.cellSelection`` in HendrikStrobelt/LSTMVis (``client/js/apps/LSTMController.js``): a signature
string of 1 inside the brush and 0 in the padding, compared with each cell's thresholded values over the same window.

"On" is ``value > threshold`` on the quantity's **raw** values, in its own units (a gate's 0..1, the cell state's
reals), so that a selection means the same as ``trace["layers.0.cell"] > threshold`` and as the bits of a
:class:`~lstm_interp.analysis.state_index.StateIndex` built at that threshold. LSTMVis compares its *tanh-scaled*
values with ``>=`` (``v >= threshold`` in the client; ``helper_functions.threshold_discrete`` on the server, whose
``query_similar_activations`` thresholds the raw states at ``arctanh(threshold)``, the same cells): to reproduce
its default of 0.3 on the cell state exactly, pass ``threshold=math.atanh(0.3)`` (about 0.3095). ``>`` rather than
``>=`` only matters for values exactly at the threshold, and keeps a zero state off at ``threshold=0``.

At the edges of the text the padding is clipped: steps before the first or after the last impose nothing (LSTMVis's
client, slicing past the window, selects no cell there at all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from lstm_interp.tracing import Trace
from lstm_interp.tracing.quantities import quantity_kind


def select_cells(
    trace: Trace,
    span: tuple[int, int] | Sequence[int],
    threshold: float = 0.3,
    before: int = 1,
    after: int = 0,
    quantity: str | None = None,
    layer: str | int | None = None,
) -> list[tuple[str, int]]:
    """The units on at every step of ``span`` and off for ``before`` steps before it and ``after`` steps after it.

    Args:
        trace: a trace holding ``quantity`` for the layers searched.
        span: ``(start, end)``, end exclusive, in the trace's steps.
        threshold: a unit is on where its raw value is ``> threshold`` (see the module docstring); a gate's
            threshold lies in 0..1, a cell or hidden state's may be any finite number.
        before, after: steps that must be off before and after the span (LSTMVis's defaults: 1 and 0); clipped at
            the edges of the text.
        quantity: the per-layer quantity; ``None`` is the trace's state quantity (``cell`` for an LSTM, ``hidden``
            for a GRU or RNN).
        layer: a layer name (``"layers.0"``) or index; ``None`` searches every layer.

    Returns:
        ``(layer name, unit)`` pairs, by layer then unit, the form :meth:`StateIndex.match` and ``ablation_study``
        take; empty if no unit has the pattern.

    Raises:
        ValueError: an empty span or one outside the trace, negative ``before``/``after``, a threshold outside the
            quantity's range or not finite, an unknown quantity or layer.
        KeyError: the trace does not hold ``quantity`` for a searched layer.

    Example::

        >>> tr = trace(model, 'he said "yes" and left')  # doctest: +SKIP
        >>> select_cells(tr, (9, 12))  # on over 'yes', off at the opening quote  # doctest: +SKIP
        [('layers.1', 37)]
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"`trace` must be a Trace, got {type(trace).__name__}")
    quantity = trace.state_quantity if quantity is None else quantity
    quantity_kind(quantity)  # an unknown name fails here, listing the known ones
    if quantity not in trace.quantities:
        raise ValueError(
            f"a {trace.cell} trace has no quantity {quantity!r}; its quantities are {list(trace.quantities)}"
        )
    layers = list(trace.layer_names) if layer is None else [_layer_name(trace, layer)]
    names = [f"{name}.{quantity}" for name in layers]
    missing = [name for name in names if name not in trace]
    if missing:
        raise KeyError(f"{missing} not in this trace; it holds {list(trace)} (trace again keeping them)")
    start, end = check_span(span, trace.num_steps)
    for label, value in (("before", before), ("after", after)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{label}` must be a number of steps >= 0, got {value!r}")
    check_threshold(threshold, quantity)

    lo, hi = max(0, start - before), min(trace.num_steps, end + after)
    selected: list[tuple[str, int]] = []
    for layer_name, name in zip(layers, names, strict=True):
        on = (trace[name][lo:hi].to(torch.float32) > threshold).numpy()  # (window, H)
        selected += [(layer_name, unit) for unit in units_with_pattern(on, start - lo, end - lo)]
    return selected


def units_with_pattern(on: np.ndarray, start: int, end: int) -> list[int]:
    """The units whose on/off pattern over a window is exactly off, on over ``[start, end)``, off: the selection rule.

    Args:
        on: (window, H) bool, each unit's on/off over the window (the span and its clipped padding).
        start, end: the span's steps within the window.
    """
    inside = np.zeros(on.shape[0], dtype=bool)
    inside[start:end] = True
    return np.flatnonzero((on == inside[:, None]).all(axis=0)).tolist()


def check_span(span: tuple[int, int] | Sequence[int], num_steps: int) -> tuple[int, int]:
    """``(start, end)`` as ints, checked to be a non-empty span inside ``0 .. num_steps``.

    Raises:
        ValueError: naming the span and the valid range.
    """
    try:
        start, end = span
    except (TypeError, ValueError):
        raise ValueError(f"`span` must be a pair (start, end), got {span!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, end)):
        raise ValueError(f"`span` must hold two integer steps, got {span!r}")
    if start >= end:
        raise ValueError(f"`span` {(start, end)} is empty: it needs start < end (end is exclusive)")
    if start < 0 or end > num_steps:
        raise ValueError(f"`span` {(start, end)} lies outside the text's steps 0 .. {num_steps} (end exclusive)")
    return start, end


def check_threshold(threshold: float, quantity: str) -> float:
    """``threshold`` as a float, checked against the range of ``quantity``'s raw values.

    A sigmoid gate's values lie in 0..1, so a threshold outside it would make every unit always on or always off;
    the cell and hidden states (and the other tanh outputs, unbounded above for a ReLU RNN) take any finite one.

    Raises:
        ValueError: a threshold that is not a finite real number, or outside a gate's 0..1.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ValueError(f"`threshold` must be a finite number, got {threshold!r}")
    if quantity_kind(quantity) == "gate" and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` {threshold!r} is outside the range of {quantity!r} (a sigmoid gate, 0..1)")
    return float(threshold)


def _layer_name(trace: Trace, layer: str | int) -> str:
    if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < trace.num_layers:
        return trace.layer_names[layer]
    if isinstance(layer, str) and layer in trace.layer_names:
        return layer
    raise ValueError(
        f"unknown layer {layer!r}; the trace's layers are {trace.layer_names} (or 0 .. {trace.num_layers - 1})"
    )
