"""Interventions on named units of a recurrent network: :class:`Ablate`, :class:`Clamp`, :class:`Scale`, :class:`Patch`.

An intervention names a per-layer quantity of a trace (``layers.1.cell``, ``layers.0.forget_gate``,
``encoder.lstm.0.reverse.hidden``, a GRU's ``layers.0.update_gate``), some of its units, and optionally the time
steps it acts on. What it does to them, at each of those steps:

- :class:`Ablate`: sets them to zero, or to their mean over a reference text or trace (``value="mean"``);
- :class:`Clamp`: sets them to a constant (one for all units, or one per unit);
- :class:`Scale`: multiplies them by a factor;
- :class:`Patch`: sets them to the values the same units had at the same step of another :class:`Trace` (the same
  position in a different text, say).

Where the new value enters the computation (:func:`~lstm_interp.interventions.run_with_interventions`):

- a **cell** intervention replaces ``c_t[k]`` once it is computed, before ``h_t = o_t * tanh(c_t)`` and before step
  ``t + 1`` reads it;
- a **hidden** intervention replaces ``h_t[k]`` for everything downstream: the recurrence, the next layer and the
  output head;
- a **gate** intervention replaces that gate's value within the step (a forget gate before ``c_t`` is formed).

Several interventions on one unit at one step apply in list order (a Scale after a Clamp scales the constant).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Union

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lstm_interp.tracing.trace import Trace

# A time-step selection: all steps (None), a slice, a boolean mask over the steps, or step indices.
Steps = Union[None, slice, Sequence[int], Sequence[bool], Tensor]  # noqa: UP007 (a runtime alias)


class InterventionError(ValueError):
    """An intervention that cannot apply: an unknown name, units out of range, a patch source too short, ..."""


@dataclass(frozen=True, eq=False)
class Intervention:
    """Base of every intervention: a trace name, its units and the time steps it acts on.

    Args:
        name: a per-layer quantity as a trace names it (``"layers.1.cell"``).
        units: a unit index or a sequence of them.
        steps: ``None`` (every step), a ``slice`` (``slice(100, None)``), a boolean mask or a sequence of step
            indices; steps count from the first character of the run (or of the prompt, in generation).
    """

    name: str
    units: int | Sequence[int]
    steps: Steps = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or "." not in self.name:
            raise InterventionError(
                f"`name` must be a per-layer trace name such as 'layers.1.cell', got {self.name!r}"
            )
        units = [self.units] if isinstance(self.units, numbers.Integral) else self.units
        if isinstance(units, Tensor):
            units = units.reshape(-1).tolist()
        if isinstance(units, (str, bytes)) or not isinstance(units, Sequence) or not units:
            raise InterventionError(f"`units` must be a unit index or a non-empty list of them, got {self.units!r}")
        bad = [u for u in units if isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 0]
        if bad:
            raise InterventionError(f"`units` must be non-negative integers, got {bad[:5]} in {self.name!r}")
        if len(set(units)) != len(units):
            raise InterventionError(f"`units` of {self.name!r} repeat a unit: {list(units)}")
        object.__setattr__(self, "units", tuple(int(u) for u in units))
        steps = self.steps
        if not (steps is None or isinstance(steps, (slice, Sequence, Tensor))) or isinstance(steps, (str, bytes)):
            raise InterventionError(
                f"`steps` must be None, a slice, a boolean mask or step indices, got {type(steps).__name__}"
            )

    @property
    def layer(self) -> str:
        """The layer prefix of the name: ``layers.1`` of ``layers.1.cell``."""
        return self.name.rsplit(".", 1)[0]

    @property
    def quantity(self) -> str:
        """The quantity of the name: ``cell`` of ``layers.1.cell``."""
        return self.name.rsplit(".", 1)[1]

    def mask(self, start: int, stop: int) -> Tensor:
        """(stop - start,) bool: whether it acts at each absolute step in ``[start, stop)``."""
        length = stop - start
        steps = self.steps
        if steps is None:
            return torch.ones(length, dtype=torch.bool)
        if isinstance(steps, slice):
            if steps.step not in (None, 1) or (steps.start or 0) < 0 or (steps.stop is not None and steps.stop < 0):
                raise InterventionError(
                    f"`steps` of {self.name!r} must be a slice of non-negative bounds and step 1, got {steps!r}"
                )
            lo, hi = steps.start or 0, stop if steps.stop is None else steps.stop
            out = torch.zeros(length, dtype=torch.bool)
            out[max(lo - start, 0) : max(min(hi, stop) - start, 0)] = True
            return out
        values = torch.as_tensor(steps)
        if values.numel() == 0:
            return torch.zeros(length, dtype=torch.bool)
        if values.dtype == torch.bool:
            out = torch.zeros(length, dtype=torch.bool)
            known = values[start:stop]
            out[: len(known)] = known  # a mask shorter than the run leaves the later steps alone
            return out
        if values.dtype.is_floating_point or values.dim() != 1 or (values < 0).any():
            raise InterventionError(f"`steps` of {self.name!r} must be non-negative step indices, got {steps!r}")
        out = torch.zeros(length, dtype=torch.bool)
        inside = values[(values >= start) & (values < stop)] - start
        out[inside] = True
        return out

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        """(n, len(units)) the values the units take at the absolute ``steps`` (n of them), given ``current``."""
        raise NotImplementedError

    @property
    def is_linear(self) -> bool:
        """Whether the new value is a multiple of the current one (:class:`Scale`) rather than a given value."""
        return False


@dataclass(frozen=True, eq=False)
class Ablate(Intervention):
    """Set the units to zero (``value="zero"``) or to their mean over ``reference`` (``value="mean"``).

    Args:
        reference: for ``value="mean"``: a text (traced without interventions) or a :class:`Trace` holding
            ``name``; the mean is over all its steps.

    Example::

        >>> Ablate("layers.1.cell", [254], value="mean", reference=war_and_peace[:20_000])  # doctest: +SKIP
    """

    value: Literal["zero", "mean"] = "zero"
    reference: str | Trace | None = field(default=None, kw_only=True, repr=False)
    _mean: Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.value not in ("zero", "mean"):
            raise InterventionError(f"`value` of Ablate must be 'zero' or 'mean', got {self.value!r}")
        if self.value == "mean" and self.reference is None:
            raise InterventionError(
                f"Ablate({self.name!r}, value='mean') needs `reference=`: a text or a Trace to average over"
            )

    def with_mean(self, mean: Tensor) -> Ablate:
        """A copy holding the reference mean of its units, (len(units),)."""
        copy = Ablate(self.name, self.units, self.value, steps=self.steps, reference=self.reference)
        object.__setattr__(copy, "_mean", mean.detach().float().cpu())
        return copy

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        if self.value == "zero":
            return torch.zeros_like(current)
        if self._mean is None:
            raise InterventionError(f"the reference mean of Ablate({self.name!r}) has not been computed")
        return self._mean.to(current).expand_as(current)


@dataclass(frozen=True, eq=False)
class Clamp(Intervention):
    """Set the units to ``value``: one number for all of them, or one per unit.

    Example::

        >>> Clamp("layers.1.cell", [254], 2.5, steps=slice(10, None))  # doctest: +SKIP
    """

    value: float | Sequence[float] | Tensor = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        values = torch.as_tensor(self.value, dtype=torch.float32).reshape(-1)
        if values.numel() not in (1, len(self.units)) or not torch.isfinite(values).all():
            raise InterventionError(
                f"`value` of Clamp({self.name!r}) must be one finite number or one per unit ({len(self.units)}), "
                f"got {self.value!r}"
            )
        object.__setattr__(self, "value", values.expand(len(self.units)).clone())

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        return self.value.to(current).expand_as(current)  # type: ignore[union-attr]


@dataclass(frozen=True, eq=False)
class Scale(Intervention):
    """Multiply the units by ``factor``.

    Example::

        >>> Scale("layers.0.forget_gate", range(16), 0.5)  # doctest: +SKIP
    """

    factor: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.factor, bool) or not isinstance(self.factor, numbers.Real) or self.factor != self.factor:
            raise InterventionError(f"`factor` of Scale({self.name!r}) must be a number, got {self.factor!r}")
        object.__setattr__(self, "factor", float(self.factor))

    @property
    def is_linear(self) -> bool:
        return True

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        return current * self.factor


@dataclass(frozen=True, eq=False)
class Patch(Intervention):
    """Set the units, step by step, to their values at the same step of ``source`` (a :class:`Trace` holding
    ``name``; its step t is used at step t of the run, so it must be at least as long as the steps patched).

    Example::

        >>> other = trace(model, 'He said "no" twice.')  # doctest: +SKIP
        >>> Patch("layers.1.cell", [254], other, steps=slice(8, 12))  # doctest: +SKIP
    """

    source: Trace | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        from lstm_interp.tracing.trace import Trace

        if not isinstance(self.source, Trace):
            raise InterventionError(
                f"`source` of Patch({self.name!r}) must be a Trace, got {type(self.source).__name__}"
            )
        if self.name not in self.source:
            raise InterventionError(
                f"the Patch source has no {self.name!r}; it holds {list(self.source)[:8]}"
            )
        width = self.source[self.name].shape[1]
        if max(self.units) >= width:
            raise InterventionError(f"units {list(self.units)} of {self.name!r}: the source has {width} units")

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        values = self.source[self.name]  # type: ignore[index]
        if len(steps) and int(steps.max()) >= len(values):
            raise InterventionError(
                f"Patch({self.name!r}) needs step {int(steps.max())} of its source, which has {len(values)} steps"
            )
        return values[steps.cpu()][:, list(self.units)].to(current)
