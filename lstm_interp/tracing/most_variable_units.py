"""``most_variable_units``: the units whose shown value varies most over a trace, the one ranking every view uses.

The figures, the HTML report and the callback's unit choice all ask the same question, "which units of this layer
change most over this text?", and answer it here, on the values as they are coloured (see
:func:`~lstm_interp.tracing.quantities.display_values`: ``tanh`` of a cell, ``2g - 1`` of a gate), so that a cell
pinned at a large value does not outrank one that switches between -0.9 and +0.9.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lstm_interp.tracing.quantities import display_values
from lstm_interp.tracing.trace import Trace


class UnitVariance(NamedTuple):
    """One ranked unit: its layer, its index in the layer, and the variance of its shown value over the steps."""

    layer: str
    unit: int
    variance: float


# A unit is "flat" over a window when its shown value (on the -1..+1 display scale) has a standard deviation below
# FLAT_STD, or stays within FLAT_BAND of its median on at least FLAT_SHARE of the steps: constant, or pinned near +1
# or -1 with a few blips, which draws as a solid band. A unit that switches between -1 and +1 is not flat.
FLAT_STD = 0.05
FLAT_BAND = 0.15
FLAT_SHARE = 0.9


def flat_units(shown: torch.Tensor) -> torch.Tensor:
    """(H,) bool: which columns of the (T, H) shown values are flat (see :data:`FLAT_STD`)."""
    if len(shown) < 2:
        return torch.ones(shown.shape[1], dtype=torch.bool)
    std = shown.std(dim=0, correction=0)
    near_median = (shown - shown.median(dim=0).values).abs() <= FLAT_BAND
    return (std < FLAT_STD) | (near_median.float().mean(dim=0) >= FLAT_SHARE)


# A flat unit whose shown value sits at a median of this magnitude or more draws as a solid deep red or blue band:
# it is *pinned* at +-1 (tanh(c) = 0.9 is |c| = 1.5). The streaming atlas counts the steps a unit spends there.
PINNED_LEVEL = 0.9


def pinned_units(shown: torch.Tensor) -> torch.Tensor:
    """(H,) bool: which columns of the (T, H) shown values are pinned near +-1: flat (:func:`flat_units`) at a
    median of magnitude :data:`PINNED_LEVEL` or more. A flat unit near white (an untrained model's) is not pinned."""
    if len(shown) == 0:
        return torch.zeros(shown.shape[1], dtype=torch.bool)
    return flat_units(shown) & (shown.median(dim=0).values.abs() >= PINNED_LEVEL)


def most_variable_units(
    trace: Trace,
    quantity: str | None = None,
    count: int = 10,
    *,
    layer: str | None = None,
    start: int = 0,
    stop: int | None = None,
    skip_flat: bool = False,
) -> list[UnitVariance]:
    """The ``count`` units of one layer whose ``quantity`` varies most over the trace, most variable first.

    Args:
        trace: the trace.
        quantity: the per-layer quantity (default: the trace's state quantity, ``cell`` or ``hidden``).
        count: how many units to return (fewer if the layer has fewer).
        layer: the layer's name prefix (default: the last layer, the one nearest the output).
        start, stop: the window of steps the variance is taken over (a figure's window; default: all steps).
        skip_flat: leave out units that are flat over the window (:func:`flat_units`: nearly constant, or
            saturated near +1 or -1 throughout), the units that would draw a solid band; if every unit is flat,
            none is left out, so a figure still has something to draw.

    Returns:
        :class:`UnitVariance` rows; ties keep unit order. NaN and infinite values count as 0, so a diverged unit
        does not rank first for being broken.

    Raises:
        ValueError: ``count`` below 1, a layer that is not in the trace, or an empty window.
        KeyError: the trace does not hold ``quantity`` for that layer.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer, got {count!r}")
    layer = trace.layer_names[-1] if layer is None else layer
    if layer not in trace.layer_names:
        raise ValueError(f"unknown layer {layer!r}; the trace's layers are {trace.layer_names}")
    quantity = quantity or trace.state_quantity
    values = trace[f"{layer}.{quantity}"][start:stop]
    if len(values) == 0:
        raise ValueError(f"steps {start}:{stop} of a trace of {trace.num_steps} steps are empty")
    shown = torch.nan_to_num(display_values(values, quantity), nan=0.0)  # (T, H)
    variance = shown.var(dim=0, correction=0) if len(shown) > 1 else torch.zeros(shown.shape[1])
    order = torch.argsort(variance, descending=True, stable=True)
    if skip_flat:
        varying = order[~flat_units(shown)[order]]
        order = varying if len(varying) else order
    return [UnitVariance(layer, int(unit), float(variance[unit])) for unit in order[:count]]
