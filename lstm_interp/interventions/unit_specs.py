"""Unit specs: the units an intervention acts on, written as ``LAYER[.QUANTITY]:UNITS[=VALUE]``.

A spec is the tuple ``(name, units, value)`` that ``lstm-interp steer`` and ``lstm-interp ablate`` read from their
``--clamp``/``--ablate``/``--scale``/``--unit`` flags: ``name`` as written before the colon (``layers.1`` or
``layers.1.cell``), the unit indices, and the number after ``=`` (``None`` without one). This module gives a spec its
meaning:

- :func:`parse_unit_spec`: a spec read from its text, ``"layers.1.cell:254,255=2.5"``;
- :func:`intervention_name`: the trace name a spec names on a network of a given cell (``layers.1`` is the layer's
  state: ``layers.1.cell`` for an LSTM, ``layers.1.hidden`` for a GRU or RNN);
- :func:`check_unit_spec`: what can be checked before any model is opened (a clamp or scale needs a value, an ablation
  takes none, the factor and clamp value rules of :mod:`~lstm_interp.interventions.intervention_rules`);
- :func:`spec_interventions`: the :class:`~lstm_interp.interventions.Clamp`, ``Ablate`` and ``Scale`` objects specs
  stand for, once the model's cell is known;
- :func:`ablation_units`: specs of units ablated one by one, as the ``(layer, unit)`` pairs and the one quantity
  :func:`~lstm_interp.experiments.ablation_study` takes.

Every error is an :class:`~lstm_interp.interventions.InterventionError` (a ``ValueError``) naming the spec.

Example::

    >>> spec_interventions("lstm", clamp=[("layers.1", [254], 3.0)])[0].name
    'layers.1.cell'
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from lstm_interp.interventions.intervention import Ablate, Clamp, Intervention, Scale, Steps
from lstm_interp.interventions.intervention_rules import (
    InterventionError,
    check_clamp_value,
    check_quantity,
    check_scale_factor,
)
from lstm_interp.tracing.quantities import state_quantity

# (name as written, unit indices, the number after '=' or None), as parse_unit_spec reads it.
UnitSpec = tuple[str, Sequence[int], "float | None"]
SpecOp = Literal["clamp", "ablate", "scale"]
SPEC_OPS: tuple[SpecOp, ...] = ("clamp", "ablate", "scale")


class MixedQuantitiesError(InterventionError):
    """Units to ablate named in more than one quantity (an ablation study ablates one quantity)."""


UNIT_SPEC_FORM = "LAYER[.QUANTITY]:UNITS[=VALUE], such as 'layers.1:254' or 'layers.1.cell:254,255=2.5'"
# The most units one spec may name. A range is checked against it before it is expanded (0-999999999 would fill
# the memory); units beyond the layer's own size are refused, naming it, once the model is open.
MAX_SPEC_UNITS = 1 << 16
_UNIT_SPEC = re.compile(r"(?P<name>[A-Za-z_]\w*(?:\.\w+)+):(?P<units>[^=]+)(?:=(?P<value>.*))?")
_UNIT_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_unit_spec(text: str) -> UnitSpec:
    """``LAYER[.QUANTITY]:UNITS[=VALUE]`` as ``(name, units, value)``, as ``lstm-interp steer`` and ``ablate`` read it.

    ``UNITS`` is a comma-separated list of unit indices and inclusive ranges (``254``, ``254,255``, ``0-7``).
    ``name`` is what was written before the colon (``layers.1`` or ``layers.1.cell``); without a quantity it means
    the model's state quantity (:func:`intervention_name`). ``value`` is ``None`` without ``=VALUE``.

    Raises:
        InterventionError: a text not of that form, quoting it and the part at fault (a unit repeated, a range that
            ends before it starts or names more than :data:`MAX_SPEC_UNITS` units, a value that is not finite).

    Example::

        >>> parse_unit_spec("layers.1.cell:254,255=2.5")
        ('layers.1.cell', [254, 255], 2.5)
        >>> parse_unit_spec("layers.0:0-2")
        ('layers.0', [0, 1, 2], None)
    """
    match = _UNIT_SPEC.fullmatch(text.strip())
    if match is None:
        raise InterventionError(f"expected {UNIT_SPEC_FORM}, got {text!r}")
    units: list[int] = []
    for part in match["units"].split(","):
        bounds = _UNIT_RANGE.fullmatch(part.strip())
        if bounds is None:
            raise InterventionError(f"units must be indices or ranges such as 254,255 or 0-7, got {part!r} in {text!r}")
        first, last = int(bounds[1]), int(bounds[2] or bounds[1])
        if last < first:
            raise InterventionError(f"the range {part!r} in {text!r} ends before it starts")
        if len(units) + last - first + 1 > MAX_SPEC_UNITS:
            raise InterventionError(
                f"the range {part.strip()!r} in {text!r} names {last - first + 1:,} units; a spec names at most "
                f"{MAX_SPEC_UNITS:,} (no layer is wider), and a layer's units run from 0 to its hidden size - 1"
            )
        units.extend(range(first, last + 1))
    if len(set(units)) != len(units):
        raise InterventionError(f"the units of {text!r} repeat a unit: {units}")
    value = None
    if match["value"] is not None:
        try:
            value = float(match["value"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InterventionError(f"the value after '=' must be a finite number, got {match['value']!r} in {text!r}")
    return match["name"], units, value


def spec_text(spec: UnitSpec) -> str:
    """The spec without its value, as it is written: ``('layers.1', [3, 4], 2.0)`` gives ``'layers.1:3,4'``."""
    name, units, _ = spec
    return f"{name}:{','.join(map(str, units))}"


def intervention_name(layer_or_name: str, cell: str) -> str:
    """The trace name a spec's name means for a network of ``cell``: ``layers.1`` becomes ``layers.1.cell`` for an
    LSTM (``layers.1.hidden`` for a GRU or RNN); a name with its quantity stays as it is.

    Args:
        layer_or_name: ``layers.<i>`` or ``layers.<i>.<quantity>``.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.

    Returns:
        The full trace name.

    Raises:
        InterventionError: a name whose last part is neither a layer index nor a quantity of ``cell``
            (``layers.0.foo_gate``), listing the quantities the model has.

    Example::

        >>> intervention_name("layers.1", "gru"), intervention_name("layers.0.forget_gate", "lstm")
        ('layers.1.hidden', 'layers.0.forget_gate')
    """
    last = layer_or_name.rsplit(".", 1)[-1]
    if last.isdigit():  # a layer, layers.<i>: its state
        return f"{layer_or_name}.{state_quantity(cell)}"
    check_quantity(last, cell, repr(layer_or_name))
    return layer_or_name


def check_unit_spec(op: SpecOp, spec: UnitSpec, *, label: str | None = None) -> None:
    """Check what ``op`` needs of ``spec`` before any model is opened, so that a bad one costs no download.

    A clamp and a scale need a value and an ablation takes none; a scale factor follows
    :func:`~lstm_interp.interventions.check_scale_factor` and a clamp value
    :func:`~lstm_interp.interventions.check_clamp_value` (a spec without a quantity names a layer's state, which
    has no range, so only named gates are range-checked here). Units beyond the layer's size are left to
    :func:`spec_interventions`, which knows the model.

    Args:
        op: ``"clamp"``, ``"ablate"`` or ``"scale"``.
        spec: ``(name, units, value)``.
        label: what names the operation in the scale factor's message (default ``op``; the CLI gives its flag).

    Raises:
        InterventionError: a missing or unwanted value, a factor or clamp value out of range, an unknown ``op``.

    Example::

        >>> check_unit_spec("clamp", ("layers.0.forget_gate", [3], 0.5))  # a sigmoid gate, held in [0, 1]: fine
        >>> check_unit_spec("ablate", ("layers.1", [3], 2.0))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        InterventionError: layers.1:3=2 sets units to zero and takes no '=VALUE'
    """
    if op not in SPEC_OPS:
        raise InterventionError(f"`op` must be one of {list(SPEC_OPS)}, got {op!r}")
    name, _, value = spec
    text = spec_text(spec)
    if op != "ablate" and value is None:
        raise InterventionError(f"{text!r} needs '=NUMBER' after the units, e.g. {text}=2.5")
    if op == "ablate" and value is not None:
        raise InterventionError(f"{text}={value:g} sets units to zero and takes no '=VALUE'")
    if op == "scale":
        check_scale_factor(value, f"{label or op} {text}")
    elif op == "clamp":
        check_clamp_value(name, value)


def spec_interventions(
    cell: str,
    *,
    clamp: Sequence[UnitSpec] = (),
    ablate: Sequence[UnitSpec] = (),
    scale: Sequence[UnitSpec] = (),
    steps: Steps = None,
) -> list[Intervention]:
    """The interventions the specs stand for on a network of ``cell``: the clamps, then the ablations (to zero),
    then the scalings, each acting on ``steps``.

    Args:
        cell: the network's cell (``model.config.cell``), which says what a bare layer name means.
        clamp, ablate, scale: specs of each kind; clamps and scalings carry their value.
        steps: the steps every intervention acts on (``slice(len(prompt), None)``: the sampled characters only).

    Returns:
        :class:`Clamp`, :class:`Ablate` and :class:`Scale` objects, in that order.

    Raises:
        InterventionError: anything :func:`check_unit_spec` or the interventions themselves refuse.

    Example::

        >>> [type(iv).__name__ for iv in spec_interventions("gru", ablate=[("layers.0", [1], None)])]
        ['Ablate']
    """
    for op, specs in zip(SPEC_OPS, (clamp, ablate, scale), strict=True):
        for spec in specs:
            check_unit_spec(op, spec)
    return [
        *(Clamp(intervention_name(n, cell), list(u), v, steps=steps) for n, u, v in clamp),
        *(Ablate(intervention_name(n, cell), list(u), steps=steps) for n, u, _ in ablate),
        *(Scale(intervention_name(n, cell), list(u), v, steps=steps) for n, u, v in scale),
    ]


def ablation_units(specs: Sequence[UnitSpec], cell: str) -> tuple[str, list[tuple[str, int]]]:
    """The one quantity and the ``(layer, unit)`` pairs of specs whose units are ablated one by one.

    Args:
        specs: ``(name, units, value)`` specs; values are not read.
        cell: the network's cell, which says what a bare layer name means.

    Returns:
        ``(quantity, [(layer, unit), ...])``, the units in the order written.

    Raises:
        InterventionError: a name with a quantity ``cell`` lacks, or no spec at all.
        MixedQuantitiesError: specs of more than one quantity (``layers.0.cell`` and ``layers.1.hidden``).

    Example::

        >>> ablation_units([("layers.1", [254, 255], None)], "lstm")
        ('cell', [('layers.1', 254), ('layers.1', 255)])
    """
    if not specs:
        raise InterventionError("`specs` names no units to ablate; give at least one LAYER[.QUANTITY]:UNITS")
    names = [intervention_name(name, cell) for name, _, _ in specs]
    quantities = {name.rsplit(".", 1)[1] for name in names}
    if len(quantities) > 1:
        raise MixedQuantitiesError(f"every unit must be of one quantity, got {sorted(quantities)}")
    units = [(name.rsplit(".", 1)[0], unit) for name, (_, unit_list, _) in zip(names, specs, strict=True)
             for unit in unit_list]  # fmt: skip
    return quantities.pop(), units


__all__ = [
    "SPEC_OPS",
    "MixedQuantitiesError",
    "UnitSpec",
    "ablation_units",
    "check_unit_spec",
    "intervention_name",
    "parse_unit_spec",
    "spec_interventions",
    "spec_text",
]
