"""``PageBudget``: which units a static report page keeps when every unit does not fit in its ``max_bytes``.

:func:`~lstm_interp.report.html_report.write_html_report` gives each embedded quantity of each layer of each probe
as a :class:`ShownQuantity` (its codes, (H, T), and its units ranked by variance), and the units the page must hold
whatever its size (:func:`named_units`: the one it opens on and every feature match's). The budget then picks, layer
by layer, the units that fit (:meth:`PageBudget.choose`), and drops more (:meth:`PageBudget.drop`) in the rare case
that the page built from that choice still comes out over the limit. The estimate, and why it errs the way it does,
is in the class's docstring; the sizes it leads to are in ``benchmarks/RESULTS.md``, "Report size".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_interp.report._encode import deflate

# Room kept for what the size estimate leaves out: the lists of embedded and most variable units, rounding.
SLACK_BYTES = 64_000
# The markup around one blob: <script type="application/octet-stream" id="a12" data-bytes="123456" ...></script>.
BLOB_MARKUP = 100


@dataclass
class ShownQuantity:
    """One embedded quantity of one layer of one probe, before its blob is made: the page entry it fills, its codes
    and its units ranked by variance (every unit, most variable first)."""

    layer: str
    entry: dict[str, Any]
    codes: np.ndarray  # (H, T) uint8
    ranking: list[tuple[int, float]]


def named_units(features: list[dict[str, Any]] | None, open_match: dict[str, Any] | None) -> dict[str, list[int]]:
    """The units the page must hold whatever its size, by layer: the one it opens on, then every feature match's."""
    named: dict[str, list[int]] = {}
    matches = ([open_match] if open_match else []) + [m for f in features or [] for m in f["matches"]]
    for match in matches:
        units = named.setdefault(match["layer"], [])
        if match["unit"] not in units:
            units.append(match["unit"])
    return named


class PageBudget:
    """Which units a page that cannot hold them all keeps, from what each costs.

    The queue: the named units, then by rank, layer after layer and quantity after quantity (the most variable unit
    of each quantity, then the second of each...), each unit once. A unit's cost is its rows, one per probe and
    quantity, deflated one by one and written as base-128 text: a slight over-estimate of its share of a blob, as
    separate rows deflate a little worse than their concatenation.

    Args:
        shown: every embedded quantity of the page, in page order.
        named: layer -> the units kept whatever they cost (:func:`named_units`); layers the page lacks are ignored.
    """

    def __init__(self, shown: list[ShownQuantity], named: dict[str, list[int]]) -> None:
        self.shown = shown
        self.by_layer: dict[str, list[ShownQuantity]] = {}
        for item in shown:
            self.by_layer.setdefault(item.layer, []).append(item)
        self.named = {layer: set(units) for layer, units in named.items() if layer in self.by_layer}
        self._cost: dict[tuple[str, int], int] = {}
        order = [(layer, unit) for layer, units in named.items() if layer in self.by_layer for unit in units]
        seen = set(order)
        depth = max(len(item.ranking) for item in shown)
        for rank in range(depth):
            for layer, items in self.by_layer.items():
                for item in items:
                    if rank < len(item.ranking) and (layer, item.ranking[rank][0]) not in seen:
                        seen.add((layer, item.ranking[rank][0]))
                        order.append((layer, item.ranking[rank][0]))
        self.queue = order

    def cost(self, layer: str, unit: int) -> int:
        """The bytes ``unit`` of ``layer`` adds to the page (memoised: deflating every row is the slow part)."""
        if (layer, unit) not in self._cost:
            self._cost[layer, unit] = sum(
                8 * min(len(deflate(row)), len(row)) // 7 + 1
                for row in (item.codes[unit].tobytes() for item in self.by_layer[layer])
            )
        return self._cost[layer, unit]

    def required(self, layer: str, unit: int, keep: dict[str, list[int]]) -> bool:
        """Whether ``unit`` stays whatever the size: a named unit, or the only unit (or none yet) of its layer."""
        return unit in self.named.get(layer, ()) or not keep[layer] or keep[layer] == [unit]

    def choose(self, budget: int) -> dict[str, list[int]] | None:
        """Per layer, the sorted units that fit in ``budget`` bytes, taken in queue order until the next one does
        not fit (named units and each layer's first are kept anyway); ``None`` when every unit fits."""
        markup = BLOB_MARKUP * len(self.shown)
        if sum(8 * item.codes.size // 7 + 1 for item in self.shown) + markup <= budget:
            return None  # fits even incompressible: nothing to estimate
        keep: dict[str, list[int]] = {layer: [] for layer in self.by_layer}
        used, full = markup, False
        for layer, unit in self.queue:
            required = self.required(layer, unit, keep)
            if full and not required:
                continue
            cost = self.cost(layer, unit)
            if used + cost > budget and not required:
                full = True  # and stop: a cheaper unit further down would jump the queue
                continue
            keep[layer].append(unit)
            used += cost
        return {layer: sorted(units) for layer, units in keep.items()} if full else None

    def drop(self, keep: dict[str, list[int]], excess: int) -> bool:
        """Remove kept units from the end of the queue, worth at least ``excess`` bytes, from ``keep`` (in place);
        ``False`` when none can go (only named units and one per layer are left)."""
        dropped = False
        for layer, unit in reversed(self.queue):
            if excess <= 0:
                break
            if unit not in keep[layer] or self.required(layer, unit, keep):
                continue
            keep[layer].remove(unit)
            excess -= self.cost(layer, unit)
            dropped = True
        return dropped
