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

import numpy as np
import torch
from torch import Tensor

from lstm_interp.interventions.intervention_rules import (
    InterventionError,
    check_clamp_value,
    check_scale_factor,
    step_selection,
    unit_ranges,
)

if TYPE_CHECKING:
    from lstm_interp.tracing.trace import Trace

# A time-step selection: all steps (None), a slice, a boolean mask over the steps, or step indices.
Steps = Union[None, slice, Sequence[int], Sequence[bool], Tensor]  # noqa: UP007 (a runtime alias)


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
    # The checked form of `steps`: None, a slice, or a bool mask / long step indices (what `mask` reads).
    _steps: slice | Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or "." not in self.name.strip(".") or "" in self.name.split("."):
            raise InterventionError(f"`name` must be a per-layer trace name such as 'layers.1.cell', got {self.name!r}")
        where = f"{type(self).__name__}({self.name!r})"
        units = [self.units] if isinstance(self.units, numbers.Integral) else self.units
        if isinstance(units, (Tensor, np.ndarray)):
            units = units.reshape(-1).tolist()
        if isinstance(units, (str, bytes)) or not isinstance(units, Sequence) or not units:
            raise InterventionError(
                f"`units` of {where} must be a unit index or a non-empty list of them, got {self.units!r:.200}"
            )
        bad = [u for u in units if isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 0]
        if bad:
            raise InterventionError(f"`units` must be non-negative integers, got {bad[:5]} in {self.name!r}")
        if len(set(units)) != len(units):
            raise InterventionError(f"`units` of {self.name!r} repeat a unit: {list(units)}")
        object.__setattr__(self, "units", tuple(int(u) for u in units))
        object.__setattr__(self, "_steps", step_selection(self.steps, where))

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
        steps = self._steps
        if steps is None:
            return torch.ones(length, dtype=torch.bool)
        out = torch.zeros(length, dtype=torch.bool)
        if isinstance(steps, slice):
            lo, hi = steps.start or 0, stop if steps.stop is None else steps.stop
            out[max(lo - start, 0) : max(min(hi, stop) - start, 0)] = True
        elif steps.dtype == torch.bool:
            known = steps[start:stop]
            out[: len(known)] = known  # a mask shorter than the run leaves the later steps alone
        else:
            out[steps[(steps >= start) & (steps < stop)] - start] = True
        return out

    def check_run_length(self, length: int) -> None:
        """Raise when ``steps`` names steps a run of ``length`` steps does not have: a mask longer than the run, or
        step indices past its end (they would silently do nothing: a mask or indices made for another text).

        Raises:
            InterventionError: naming the steps and the run's length.
        """
        steps = self._steps
        if not isinstance(steps, Tensor) or not len(steps):
            return
        if steps.dtype == torch.bool and len(steps) > length:
            raise InterventionError(
                f"the `steps` mask of {type(self).__name__}({self.name!r}) has {len(steps)} entries, but the run has "
                f"only {length} steps: a mask longer than the run was made for another text"
            )
        if steps.dtype != torch.bool and int(steps.max()) >= length:
            past = unit_ranges(steps[steps >= length].tolist())
            raise InterventionError(
                f"`steps` {past} of {type(self).__name__}({self.name!r}) are past the end of the run, which has "
                f"{length} steps (0-{length - 1})"
            )

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        """(n, len(units)) the values the units take at the absolute ``steps`` (n of them), given ``current``."""
        raise NotImplementedError

    def source_traces(self) -> list[tuple[str, Trace]]:
        """The traces it reads values from, each with what it is to the intervention (for messages)."""
        return []

    @property
    def is_linear(self) -> bool:
        """Whether the new value is a multiple of the current one (:class:`Scale`) rather than a given value."""
        return False


@dataclass(frozen=True, eq=False)
class Ablate(Intervention):
    """Set the units to zero (``value="zero"``) or to their mean over ``reference`` (``value="mean"``).

    Args:
        reference: for ``value="mean"`` only: a non-empty text (traced without interventions), a :class:`Trace`
            holding ``name`` (of the model it acts on: the same checks as a :class:`Patch` source), or, for an
            ``nn.LSTM``/``nn.GRU``/``nn.RNN``, its (T, input_size) inputs; the mean is over all its steps.

    Example::

        >>> Ablate("layers.1.cell", [254], value="mean", reference=war_and_peace[:20_000])  # doctest: +SKIP
    """

    value: Literal["zero", "mean"] = "zero"
    reference: str | Trace | Tensor | None = field(default=None, kw_only=True, repr=False)
    _mean: Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        from lstm_interp.tracing.trace import Trace

        if not isinstance(self.value, str) or self.value not in ("zero", "mean"):
            raise InterventionError(f"`value` of Ablate must be 'zero' or 'mean', got {self.value!r}")
        reference = self.reference
        if self.value == "zero":
            if reference is not None:
                # A reference with value="zero" is a mean ablation whose value was forgotten: it would be ignored.
                raise InterventionError(
                    f"Ablate({self.name!r}) got `reference=` with value='zero', which does not read it; pass "
                    "value='mean' to ablate to the reference mean, or leave `reference` out"
                )
            return
        if reference is None:
            raise InterventionError(
                f"Ablate({self.name!r}, value='mean') needs `reference=`: a text or a Trace to average over"
            )
        if isinstance(reference, Trace):
            check_source_trace(reference, self, f"the reference trace of Ablate({self.name!r})")
        elif not (isinstance(reference, str) and reference) and not isinstance(reference, Tensor):
            raise InterventionError(
                f"`reference` of Ablate({self.name!r}, value='mean') must be a non-empty text, a Trace or a module's "
                f"(T, input_size) inputs, got {type(reference).__name__} {reference!r:.100}"
            )

    def with_mean(self, mean: Tensor) -> Ablate:
        """A copy holding the reference mean of its units, (len(units),)."""
        copy = Ablate(self.name, self.units, self.value, steps=self.steps, reference=self.reference)
        object.__setattr__(copy, "_mean", mean.detach().float().cpu())
        return copy

    def source_traces(self) -> list[tuple[str, Trace]]:
        from lstm_interp.tracing.trace import Trace

        if self.value == "mean" and isinstance(self.reference, Trace):
            return [(f"the reference trace of Ablate({self.name!r})", self.reference)]
        return []

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        if self.value == "zero":
            return torch.zeros_like(current)
        if self._mean is None:
            raise InterventionError(f"the reference mean of Ablate({self.name!r}) has not been computed")
        return self._mean.to(current).expand_as(current)


@dataclass(frozen=True, eq=False)
class Clamp(Intervention):
    """Set the units to ``value``: one number for all of them, or one per unit.

    A gate is held to the values it can take (:func:`~.intervention_rules.clamp_range`): a sigmoid gate to [0, 1],
    the LSTM cell candidate and the GRU new gate to [-1, 1].

    Example::

        >>> Clamp("layers.1.cell", [254], 2.5, steps=slice(10, None))  # doctest: +SKIP
    """

    value: float | Sequence[float] | Tensor = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "value", check_clamp_value(self.name, self.value, len(self.units)))

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        return self.value.to(current).expand_as(current)  # type: ignore[union-attr]


@dataclass(frozen=True, eq=False)
class Scale(Intervention):
    """Multiply the units by ``factor``: 0, or a finite number of magnitude ``1 / MAX_SCALE`` to ``MAX_SCALE``
    (:data:`~.intervention_rules.MAX_SCALE`, 1e6).

    Example::

        >>> Scale("layers.0.forget_gate", range(16), 0.5)  # doctest: +SKIP
    """

    factor: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "factor", check_scale_factor(self.factor, f"Scale({self.name!r})"))

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
        check_source_trace(self.source, self, "the Patch source")

    def source_traces(self) -> list[tuple[str, Trace]]:
        return [("the Patch source", self.source)]  # type: ignore[list-item]

    def new_values(self, current: Tensor, steps: Tensor) -> Tensor:
        values = self.source[self.name]  # type: ignore[index]
        if len(steps) and int(steps.max()) >= len(values):
            raise InterventionError(
                f"Patch({self.name!r}) needs step {int(steps.max())} of its source, which has {len(values)} steps"
            )
        return values[steps.cpu()][:, list(self.units)].to(current)


def check_source_trace(source: Trace, iv: Intervention, role: str) -> None:
    """Raise unless ``source`` (a Patch source, a mean ablation's reference trace) holds ``iv.name`` with its units.

    Whether its width is the model's is checked once the model is known
    (:func:`~lstm_interp.interventions.run_with_interventions.resolve`), for every trace :meth:`source_traces` gives.
    """
    if iv.name not in source:
        raise InterventionError(f"{role} has no {iv.name!r}; it holds {list(source)[:8]}")
    width = source[iv.name].shape[1]
    if max(iv.units) >= width:
        raise InterventionError(f"units {list(iv.units)} of {iv.name!r}: {role} has {width} units")


def intervention_list(interventions: object, parameter: str = "interventions") -> list[Intervention]:
    """``interventions`` as a list: a list (or tuple) of interventions, one intervention alone (a one-item list)
    or ``None`` (no interventions).

    Raises:
        TypeError: anything else (a string, a number, a list holding something that is not an intervention),
            naming ``parameter`` and what it holds.
    """
    if interventions is None:
        return []
    if isinstance(interventions, Intervention):
        return [interventions]
    expected = f"`{parameter}` must be a list of Ablate/Clamp/Scale/Patch objects (or one of them)"
    if isinstance(interventions, (str, bytes)) or not isinstance(interventions, Sequence):
        raise TypeError(f"{expected}, got {type(interventions).__name__} {interventions!r:.100}")
    bad = [type(iv).__name__ for iv in interventions if not isinstance(iv, Intervention)]
    if bad:
        raise TypeError(f"{expected}, got {bad}")
    return list(interventions)
