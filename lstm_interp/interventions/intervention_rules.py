"""The rules an intervention's values follow, in one place for the library, the CLI and the explorer.

- :func:`check_quantity`: the quantity an intervention names is one a layer of the model has;
- :func:`check_scale_factor`: a :class:`~.Scale` factor is 0 or a finite number whose magnitude lies in
  ``[1 / MAX_SCALE, MAX_SCALE]``;
- :func:`check_clamp_value`: a :class:`~.Clamp` value is finite, and inside the range of the quantity it sets where
  that quantity has one (:func:`clamp_range`: a sigmoid gate 0..1, a tanh gate -1..1);
- :func:`step_selection`: the ``steps`` of any intervention, checked and turned into a slice, a boolean mask or
  step indices;
- :func:`check_finite_run`: what a run under interventions computed is finite (a value that overflowed float32
  makes every later one NaN);
- :func:`unit_ranges`: units written as ranges (``0-7,12``), for messages about many units.

Each raises :class:`InterventionError` (a ``ValueError``) naming the parameter, the value and what was expected.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from lstm_interp.tracing.quantities import QUANTITY_KINDS, quantities_of

# The largest factor a Scale takes (and 1 / MAX_SCALE the smallest non-zero one, in magnitude). Gates and hidden
# states lie in [-1, 1] and cell states of trained networks within a few hundred, so a factor of 1e6 already
# saturates every sigmoid and tanh the scaled value feeds: a larger one changes nothing but the distance to
# float32's overflow (3.4e38), which a value scaled at consecutive steps reaches in a few steps (1e300 does it in
# one, inf at once). A tiny factor is as bad: the fused path divides the carried state by it.
MAX_SCALE = 1e6
# Quantities produced by a tanh: a Clamp outside [-1, 1] puts them where the network can never be. The hidden state
# is not one: an RNN with nonlinearity="relu" or an LSTM with proj_size has an unbounded one.
_TANH_GATES = ("cell_candidate", "new_gate")


class InterventionError(ValueError):
    """An intervention that cannot apply: an unknown name, units out of range, a patch source too short, ..."""


def check_quantity(quantity: object, cell: str, where: str) -> str:
    """``quantity`` once a layer of ``cell`` (``"lstm"``, ``"gru"``, ``"rnn"``) has it.

    Args:
        where: what names it, for the message (``"'layers.0.foo_gate'"``, ``"`quantity`"``).

    Raises:
        InterventionError: an unknown quantity, listing the ones a layer of ``cell`` has.
    """
    known = quantities_of(cell)
    if quantity not in known:
        article = "a" if cell == "gru" else "an"
        raise InterventionError(
            f"{where}: unknown quantity {quantity!r}; {article} {cell.upper()} layer has {list(known)}"
        )
    return quantity  # type: ignore[return-value]


def check_scale_factor(factor: object, where: str = "Scale") -> float:
    """``factor`` as a float, once it is 0 or a finite number of magnitude in ``[1 / MAX_SCALE, MAX_SCALE]``.

    Args:
        factor: the factor to check.
        where: what the factor belongs to, for the message (``"Scale('layers.0.cell')"``, ``"--scale"``).

    Raises:
        InterventionError: a factor that is not a real number, not finite, or out of that range.
    """
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
        raise InterventionError(f"`factor` of {where} must be a number, got {type(factor).__name__} {factor!r}")
    value = float(factor)
    if value != 0 and not (1 / MAX_SCALE <= abs(value) <= MAX_SCALE):  # NaN and inf fail this too
        raise InterventionError(
            f"`factor` of {where} must be 0 or a finite number of magnitude {1 / MAX_SCALE:g} to {MAX_SCALE:g} "
            f"(MAX_SCALE: beyond it every gate it feeds saturates and float32 overflows), got {factor!r}"
        )
    return value


def clamp_range(quantity: str) -> tuple[float, float] | None:
    """The values ``quantity`` (``"forget_gate"``, or a full name ``"layers.0.forget_gate"``) can take, to which a
    :class:`~.Clamp` of it is held: ``(0, 1)`` for a sigmoid gate, ``(-1, 1)`` for a tanh gate (the LSTM cell
    candidate, the GRU new gate); ``None`` for the cell and hidden states, which any finite value may be set to."""
    quantity = quantity.rsplit(".", 1)[-1]
    if QUANTITY_KINDS.get(quantity) == "gate":
        return (0.0, 1.0)
    if quantity in _TANH_GATES:
        return (-1.0, 1.0)
    return None


def check_clamp_value(name: str, value: object, num_units: int | None = None) -> Tensor:
    """``value`` as a float32 tensor of ``num_units`` values, once it is one finite number or one per unit, inside
    :func:`clamp_range` of ``name``'s quantity.

    Args:
        name: the trace name set (``"layers.0.forget_gate"``); its last part picks the range.
        value: a number, a sequence of numbers or a tensor.
        num_units: the units clamped (``None``: one number is expected, as the CLI gives).

    Raises:
        InterventionError: a value that is not numbers, the wrong count, not finite, or outside the range.
    """
    where = f"`value` of Clamp({name!r})"
    expected = "one finite number" + (f" or one per unit ({num_units})" if num_units not in (None, 1) else "")
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise InterventionError(f"{where} must be {expected}, got {type(value).__name__} {value!r}")
    try:
        values = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise InterventionError(f"{where} must be {expected}, got {value!r:.200}") from None
    if values.numel() not in (1, num_units or 1) or not torch.isfinite(values).all():
        raise InterventionError(f"{where} must be {expected}, got {value!r:.200}")
    bounds = clamp_range(name)
    if bounds is not None and ((values < bounds[0]) | (values > bounds[1])).any():
        kind = "sigmoid" if bounds[0] == 0 else "tanh"
        raise InterventionError(
            f"{where}: {name.rsplit('.', 1)[-1]!r} is a {kind} gate, which only takes values in "
            f"[{bounds[0]:g}, {bounds[1]:g}]; got {value!r:.200}"
        )
    return values.expand(num_units or 1).clone()


def step_selection(steps: object, where: str) -> slice | Tensor | None:
    """``steps`` checked: ``None`` (every step), a ``slice`` of non-negative integer bounds and step 1, or a
    (n,) tensor: a boolean mask over the steps, or non-negative step indices.

    Args:
        steps: ``None``, a slice, a boolean mask or step indices (a list, a range, a tensor or a NumPy array).
        where: the intervention, for the message (``"Ablate('layers.0.cell')"``).

    Raises:
        InterventionError: any other value, naming it and what was expected.
    """
    expected = "None, a slice(start, stop) of non-negative integers, a boolean mask or non-negative step indices"
    if steps is None:
        return None
    if isinstance(steps, slice):
        bad_bound = [
            b for b in (steps.start, steps.stop)
            if b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 0)
        ]  # fmt: skip
        if bad_bound or steps.step not in (None, 1):
            raise InterventionError(f"`steps` of {where} must be {expected}, got {steps!r}")
        return steps
    if isinstance(steps, (Tensor, np.ndarray)):
        values = torch.as_tensor(steps)
        if values.dtype != torch.bool and (values.dtype.is_floating_point or values.dtype.is_complex):
            raise InterventionError(f"`steps` of {where} must be {expected}, got a tensor of {values.dtype}")
    elif isinstance(steps, Sequence) and not isinstance(steps, (str, bytes)):
        items = list(steps)
        if all(isinstance(s, (bool, np.bool_)) for s in items):
            values = torch.tensor([bool(s) for s in items], dtype=torch.bool)
        elif all(isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) for s in items):
            if any(s >= 2**63 for s in items):
                raise InterventionError(f"`steps` of {where} holds a step index beyond any run: {max(items)}")
            values = torch.tensor([int(s) for s in items], dtype=torch.long)
        else:
            bad = next(s for s in items if not isinstance(s, numbers.Integral) or isinstance(s, (bool, np.bool_)))
            raise InterventionError(
                f"`steps` of {where} must be {expected} (all booleans or all integers), got {type(bad).__name__} "
                f"{bad!r} in {steps!r:.200}"
            )
    else:
        raise InterventionError(f"`steps` of {where} must be {expected}, got {type(steps).__name__} {steps!r:.200}")
    if values.dim() != 1:
        raise InterventionError(f"`steps` of {where} must be one-dimensional, got shape {tuple(values.shape)}")
    if values.dtype != torch.bool:
        values = values.long()
        if (values < 0).any():
            raise InterventionError(f"`steps` of {where} must be {expected}, got negative steps {steps!r:.200}")
    return values


def unit_ranges(units: Sequence[int]) -> str:
    """The units as sorted inclusive ranges: ``[0, 1, 2, 3, 9]`` gives ``'0-3,9'``."""
    ordered = sorted(set(units))
    parts: list[str] = []
    start = previous = None
    for unit in [*ordered, None]:
        if start is not None and (unit is None or unit != previous + 1):
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if start is None:
            start = unit
        previous = unit
    return ",".join(parts)


def check_finite_run(values: Sequence[Tensor], interventions: Sequence[object], where: str) -> None:
    """Raise when any of ``values`` (a run's outputs and state) holds inf or NaN, naming the interventions.

    A scaled or clamped value can overflow float32 a few steps after it is set (a cell scaled at every step grows
    geometrically); what comes out then is NaN, not a result.
    """
    if all(bool(torch.isfinite(v).all()) for v in values):
        return
    listed = ", ".join(f"{type(iv).__name__}({iv.name!r}, units {unit_ranges(iv.units)})" for iv in interventions)  # type: ignore[attr-defined]
    raise InterventionError(
        f"the network's values became inf or NaN {where} under the interventions [{listed}]: a value grew past "
        f"float32's range (about 3.4e38); use a smaller factor or value, or fewer steps"
    )


__all__ = [
    "MAX_SCALE",
    "InterventionError",
    "check_clamp_value",
    "check_finite_run",
    "check_quantity",
    "check_scale_factor",
    "clamp_range",
    "step_selection",
    "unit_ranges",
]
