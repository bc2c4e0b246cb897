"""``IndexBits``: the on/off bits of a state index, as an accumulator of a corpus pass.

Each segment's values of each indexed name become bits (``value > threshold``), packed eight steps to a byte along
time, one row of bytes per unit (``np.packbits``): the layout of ``bits/<name>.bin``. Segments start on multiples of
8 (the shards and segments of :meth:`~lstm_interp.analysis.StateIndex.build` are), so their bytes only need putting
end to end, and two parts merge by joining their lists: the bits of N processes are those of one, byte for byte.
The bits of the whole corpus pass through rank 0's memory (``steps * units / 8`` bytes per name), where the folder
is written.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from lstm_interp.tracing import Trace


class IndexBits:
    """The packed bits of ``names`` above ``threshold``, segment after segment (see the module docstring).

    Args:
        names: the trace names indexed (``"layers.1.cell"``, ...).
        threshold: a unit is on where its raw value is ``> threshold``.
    """

    def __init__(self, names: list[str], threshold: float) -> None:
        self.names, self.threshold = list(names), threshold
        self.start: int | None = None
        self.end = 0
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in names}  # (H, bytes) each

    def update(self, trace: Trace, start: int) -> IndexBits:
        """Add the next segment (starting at corpus step ``start``, a multiple of 8 unless it is the first)."""
        if self.start is not None and start != self.end:
            raise ValueError(f"a segment starting at step {start} does not continue the bits, ending at {self.end}")
        if self.start is not None and self.end % 8:
            raise ValueError(f"a segment follows one that ends at step {self.end}, not on a byte (a multiple of 8)")
        for name in self.names:
            on = trace[name].numpy() > self.threshold  # (L, H)
            self.parts[name].append(np.ascontiguousarray(np.packbits(on, axis=0).T))
        self.start = start if self.start is None else self.start
        self.end = start + trace.num_steps
        return self

    def merge(self, other: IndexBits) -> IndexBits:
        """These bits followed by ``other``'s (the next part of the corpus): a new accumulator.

        Raises:
            ValueError: other names or threshold, parts that are not consecutive or not on a byte.
        """
        if (self.names, self.threshold) != (other.names, other.threshold):
            raise ValueError("cannot merge index bits of other names or threshold")
        if other.start is None:
            return copy.deepcopy(self)
        if self.start is None:
            return copy.deepcopy(other)
        if other.start != self.end or self.end % 8:
            raise ValueError(f"the bits to merge start at step {other.start}; these end at {self.end}, which must "
                             "be the same multiple of 8")  # fmt: skip
        merged = copy.copy(self)
        merged.parts = {name: self.parts[name] + other.parts[name] for name in self.names}
        merged.end = other.end
        return merged

    def write(self, folder: Path) -> dict[str, int]:
        """Write ``<name>.bin`` under ``folder`` for every name; returns each name's width (units)."""
        widths = {}
        for name, parts in self.parts.items():
            rows = np.concatenate(parts, axis=1) if parts else np.zeros((0, 0), np.uint8)  # (H, ceil(T / 8))
            with open(folder / f"{name}.bin", "wb") as out:
                out.write(rows.tobytes())
                out.flush()
                os.fsync(out.fileno())
            widths[name] = rows.shape[0]
        return widths
