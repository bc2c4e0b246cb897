"""``UnitStats``: per unit of one layer, how its displayed value is distributed and how its gates behave, streamed.

Counted over every step it is shown (segment by segment, mergeable like
:class:`~lstm_interp.analysis.ActivationStats`):

- a **histogram** of the displayed value (:func:`~lstm_interp.tracing.display_values`: ``tanh(c)``, ``2g - 1``, ...)
  in ``bins`` equal bins over -1..+1, NaN left out; with the default 40 bins of 0.05 the edges +-0.9 fall on bin
  boundaries;
- **saturated** steps: ``|displayed value| >= PINNED_LEVEL`` (0.9), the level from which the report calls a flat
  unit pinned at +-1 (:mod:`~lstm_interp.tracing.most_variable_units`); ``saturation()`` is their share;
- **gate habits**: the sum of the memory gate (an LSTM's forget gate, a GRU's update gate; near 1 the unit keeps its
  state, an integrator; low, it resets) and the steps the unit *writes*: an LSTM's input gate above 0.5, a GRU's
  update gate below 0.5 (then ``1 - z``, the weight of the new value, is above one half). A plain RNN has no gates.

Counts merge exactly; the gate sums are float64, so a merge equals one pass to float64 rounding.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor

from lstm_interp.tracing import MEMORY_GATE, display_values
from lstm_interp.tracing.most_variable_units import PINNED_LEVEL

__all__ = ["WRITE_GATE", "UnitStats"]

# The gate whose opening writes a new value into the state, and the rule that counts a step as a write.
WRITE_GATE = {"lstm": ("input_gate", "input_gate > 0.5"), "gru": ("update_gate", "update_gate < 0.5")}


class UnitStats:
    """The running histogram, saturation and gate habits of one layer's units.

    Args:
        units: ``H``.
        quantity: the quantity counted (which says how it is displayed).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (which gates there are).
        bins: histogram bins over -1..+1.

    Example::

        >>> stats = UnitStats(512, "cell", "lstm")  # doctest: +SKIP
        >>> stats.update(tr["layers.1.cell"], tr["layers.1.forget_gate"], tr["layers.1.input_gate"])  # doctest: +SKIP
    """

    def __init__(self, units: int, quantity: str, cell: str, bins: int = 40) -> None:
        self.units, self.quantity, self.cell, self.bins = units, quantity, cell, bins
        self.memory_gate = MEMORY_GATE.get(cell)
        self.write_gate = WRITE_GATE.get(cell)
        self.histogram = torch.zeros(units, bins, dtype=torch.int64)  # (H, bins)
        self.saturated = torch.zeros(units, dtype=torch.int64)
        self.finite = torch.zeros(units, dtype=torch.int64)
        self.memory_sum = torch.zeros(units, dtype=torch.float64)
        self.memory_count = torch.zeros(units, dtype=torch.int64)
        self.writes = torch.zeros(units, dtype=torch.int64)

    @property
    def gate_names(self) -> list[str]:
        """The gates :meth:`update` needs (none for a plain RNN)."""
        return [g for g in (self.memory_gate, self.write_gate[0] if self.write_gate else None) if g]

    def update(self, values: Tensor, memory: Tensor | None = None, write: Tensor | None = None) -> UnitStats:
        """Count one segment: ``values`` (T, H) raw values of the quantity, and the memory and write gates' (T, H)
        values (:attr:`gate_names`, in that order; required when the cell has them). Returns ``self``.

        Raises:
            ValueError: a missing gate, or values of the wrong width.
        """
        if values.dim() != 2 or values.shape[1] != self.units:
            raise ValueError(f"expected (T, {self.units}) values, got {tuple(values.shape)}")
        if self.gate_names and (memory is None or write is None):
            raise ValueError(f"a {self.cell} layer's statistics need its {self.gate_names} values too")
        shown = display_values(values, self.quantity)  # (T, H), NaN kept
        self.saturated += (shown.abs() >= PINNED_LEVEL).sum(dim=0)  # NaN compares False
        # The bin is floor((shown + 1) * bins / 2) in float32 (a value within a rounding of an edge may fall on its
        # other side); NaN goes to an extra bin per unit, dropped, so that no mask has to be gathered.
        bins = shown.add_(1).mul_(self.bins / 2).floor_().clamp_(0, self.bins - 1)  # shown is ours to overwrite
        if torch.isnan(bins).any():
            bins.nan_to_num_(self.bins)
        bins = bins.to(torch.int32).add_(torch.arange(self.units, dtype=torch.int32) * (self.bins + 1))
        counts = torch.bincount(bins.view(-1), minlength=self.units * (self.bins + 1)).view(self.units, -1)
        self.histogram += counts[:, : self.bins]
        self.finite += len(values) - counts[:, self.bins]
        if memory is not None and self.memory_gate:
            total = memory.sum(dim=0, dtype=torch.float64)
            if torch.isfinite(total).all():
                self.memory_sum += total
                self.memory_count += len(memory)
            else:  # a diverged run: leave its NaN and infinite gate values out
                ok = torch.isfinite(memory)
                self.memory_sum += torch.where(ok, memory, 0.0).sum(dim=0, dtype=torch.float64)
                self.memory_count += ok.sum(dim=0)
        if write is not None and self.write_gate:
            self.writes += (write > 0.5 if self.cell == "lstm" else write < 0.5).sum(dim=0)
        return self

    def merge(self, other: UnitStats) -> UnitStats:
        """These counts plus ``other``'s: a new accumulator.

        Raises:
            ValueError: statistics of another width, quantity, cell or binning.
        """
        mine = (self.units, self.quantity, self.cell, self.bins)
        theirs = (other.units, other.quantity, other.cell, other.bins)
        if mine != theirs:
            raise ValueError(f"cannot merge unit statistics of {theirs} into those of {mine} (H, quantity, cell, bins)")
        merged = copy.deepcopy(self)
        for name in ("histogram", "saturated", "finite", "memory_sum", "memory_count", "writes"):
            setattr(merged, name, getattr(self, name) + getattr(other, name))
        return merged

    def saturation(self, unit: int) -> float | None:
        """The share of the unit's counted steps at ``|displayed value| >= PINNED_LEVEL`` (None before any)."""
        return _share(self.saturated[unit], self.finite[unit])

    def gate_habits(self, unit: int) -> dict[str, Any] | None:
        """``{"memory_gate", "memory_mean", "write_gate", "write_fraction"}`` of one unit (None for a plain RNN)."""
        if not self.memory_gate or not self.write_gate:
            return None
        return {
            "memory_gate": self.memory_gate,
            "memory_mean": _share(self.memory_sum[unit], self.memory_count[unit]),
            "write_gate": self.write_gate[1],
            "write_fraction": _share(self.writes[unit], self.finite[unit]),
        }


def _share(part: Tensor, whole: Tensor) -> float | None:
    share = float(part) / int(whole) if int(whole) else math.nan
    return None if math.isnan(share) else share
