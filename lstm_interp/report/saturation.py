"""When a layer's state is pinned at +-1: the numbers a figure title or a page note gives, and what to show instead.

A trained LSTM's cell states can sit far from zero (sd of c = 90 in one run of the demo), so ``tanh(c)``, the value
every picture colours, is +1 or -1 almost everywhere and a unit draws as one solid band, whatever it scores.
:func:`~lstm_interp.analysis.find_cells` ranks the units that visibly switch with a feature first (``visible``);
when none does and the state itself is pinned, the cell-text figure and the HTML report say so, with the numbers
measured here, and show the displayed quantity that varies most (the hidden state or a gate) in its place.

A unit is *pinned* when its displayed value is flat by the rule of
:func:`~lstm_interp.tracing.most_variable_units.flat_units` (nearly constant, or within 0.15 of its median on 90% of
the steps) at a median of magnitude :data:`PINNED_LEVEL` or more: a solid deep red or blue band. (A flat unit near
white, as in an untrained model, is not pinned: there is nothing saturated to report.) It only decides whether the
state is pinned, never whether a feature's unit is shown: that is the ``visible`` flag's job.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from lstm_interp.tracing import QUANTITY_KINDS, QUANTITY_ORDER, Trace
from lstm_interp.tracing.most_variable_units import PINNED_LEVEL, flat_units, pinned_units
from lstm_interp.tracing.quantities import display_values

__all__ = ["PINNED_LEVEL", "LayerState", "Saturation", "effect_text", "pinned_mask", "shown_name", "state_saturation"]

# How the notes name a state: "layers.1 cells saturated: sd of c = 90".
_PLURAL = {"cell": "cells", "hidden": "hidden states"}
_SYMBOL = {"cell": "c", "hidden": "h"}


def shown_name(quantity: str) -> str:
    """The name of what a picture colours for ``quantity``: ``tanh(c)`` for the cell state, else the quantity."""
    return f"tanh({_SYMBOL.get(quantity, quantity)})" if QUANTITY_KINDS.get(quantity) == "unbounded" else quantity


def _displayed(trace: Trace, layer: str, quantity: str, window: slice, unit: int | None = None) -> torch.Tensor:
    """(T, H) the displayed values of one layer's quantity over ``window`` (one column: ``unit``), NaN as 0 (as
    most_variable_units does)."""
    values = trace[f"{layer}.{quantity}"][window]
    values = values if unit is None else values[:, unit : unit + 1]
    return torch.nan_to_num(display_values(values, quantity), nan=0.0)


def flat_mask(
    trace: Trace, layer: str, quantity: str, window: slice = slice(None), *, unit: int | None = None
) -> torch.Tensor:
    """(H,) bool: which units of ``layer`` draw ``quantity`` as a flat band over ``window`` (any colour); with
    ``unit``, (1,): that unit only."""
    return flat_units(_displayed(trace, layer, quantity, window, unit))


def pinned_mask(
    trace: Trace, layer: str, quantity: str, window: slice = slice(None), *, unit: int | None = None
) -> torch.Tensor:
    """(H,) bool: which units of ``layer`` draw ``quantity`` as a flat band of deep red or blue over ``window``:
    flat, at a median of magnitude :data:`PINNED_LEVEL` or more (see the module); with ``unit``, (1,): that unit."""
    return pinned_units(_displayed(trace, layer, quantity, window, unit))


@dataclass(frozen=True)
class LayerState:
    """One layer's state over the steps looked at: the sd of its raw values and how many units are pinned."""

    layer: str
    sd: float
    pinned: int
    units: int


@dataclass(frozen=True)
class Saturation:
    """Pinned states, measured: the state quantity, each layer's numbers, and the quantity shown instead.

    Args:
        quantity: the state quantity that is pinned (``"cell"``, or ``"hidden"`` for a GRU/RNN).
        layers: one :class:`LayerState` per layer looked at.
        instead: the displayed quantity that varies most over the same steps, or ``None`` if the trace has no
            other quantity of those layers (or none that may be shown).
    """

    quantity: str
    layers: tuple[LayerState, ...]
    instead: str | None

    def note(self) -> str:
        """One line for a title or a page, e.g. ``"layers.1 cells saturated: sd of c = 90, tanh(c) pinned near +-1
        in 510 of 512 units; showing hidden instead"``."""
        plural = _PLURAL.get(self.quantity, f"{self.quantity} values")
        symbol = _SYMBOL.get(self.quantity, self.quantity)
        parts = [
            f"{s.layer} {plural} saturated: sd of {symbol} = {_number(s.sd)}, {shown_name(self.quantity)} pinned "
            f"near ±1 in {s.pinned} of {s.units} units"
            for s in self.layers
        ]
        tail = f"showing {self.instead} instead" if self.instead else "no other quantity traced to show"
        return "; ".join(parts) + f"; {tail}"


def state_saturation(
    trace: Trace,
    layers: Sequence[str],
    quantity: str | None = None,
    *,
    window: slice = slice(None),
    allowed: Collection[str] | None = None,
) -> Saturation:
    """Measure ``quantity`` (default: the trace's state quantity) of ``layers`` over ``window``, and find the
    displayed quantity to show in its place: of the others the trace holds for every one of ``layers`` (and that
    ``allowed`` lists, when given), the one whose displayed values vary most, as a mean over the units.

    Raises:
        ValueError: no layers, or a layer that is not in the trace (naming the trace's layers).
    """
    quantity = quantity or trace.state_quantity
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise ValueError("`layers` is empty; name at least one layer of the trace")
    unknown = [layer for layer in layers if layer not in trace.layer_names]
    if unknown:
        raise ValueError(f"layers {unknown} are not in this trace; its layers are {trace.layer_names}")
    states = []
    for layer in layers:
        raw = trace[f"{layer}.{quantity}"][window].double()
        finite = raw[torch.isfinite(raw)]
        sd = float(finite.std(correction=0)) if finite.numel() else float("nan")
        pinned = pinned_mask(trace, layer, quantity, window)
        states.append(LayerState(layer, sd, int(pinned.sum()), int(pinned.numel())))
    candidates = [
        q
        for q in QUANTITY_ORDER
        if q != quantity and (allowed is None or q in allowed) and all(f"{layer}.{q}" in trace for layer in layers)
    ]
    variance = {
        q: float(torch.cat([_displayed(trace, layer, q, window).var(dim=0, correction=0) for layer in layers]).mean())
        for q in candidates
    }
    instead = max(candidates, key=lambda q: variance[q]) if candidates else None  # first in QUANTITY_ORDER on ties
    return Saturation(quantity, tuple(states), instead)


def effect_text(effect: float) -> str:
    """An effect on the colour scale with its sign, ``+0.88`` or ``-0.15``; one that rounds to zero is ``+0.00``,
    never ``-0.00``."""
    return f"{round(float(effect), 2) + 0.0:+.2f}"  # + 0.0 turns -0.0 into 0.0


def _number(x: float) -> str:
    """A standard deviation as a reader wants it: ``90``, ``1,234``, ``3.7``, ``0.052``."""
    if x != x:  # NaN: no finite value
        return "nan"
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.2g}"
