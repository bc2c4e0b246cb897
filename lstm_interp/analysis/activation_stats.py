"""``ActivationStats``: the one streaming accumulator over a text of any length, segment by segment, mergeable.

It gathers, from each :class:`~lstm_interp.Trace` it is shown, what the long-text analyses need and nothing more:

- gate saturation counts (Karpathy, Johnson & Fei-Fei 2015, Section 4.2): per layer, gate and unit, the finite
  steps below ``low`` and above ``high``;
- the LSTM cell state's count, mean and sum of squared deviations per layer (merged with Chan et al.'s pairwise
  update, so that the standard deviation stays accurate over millions of steps);
- the log-probability of every next character, ``log P(text[t] | text[:t])`` for ``t = 1 ... T-1``; the last row
  of one segment waits for the first character of the next;
- the NaN/inf values seen, by name.

Traces are fed in text order with :meth:`update` (one segment after another, each continuing the last: see
:func:`~lstm_interp.tracing.trace_segments`). Two accumulators over consecutive parts of a text, shards of a corpus
or the ranks of a distributed run, combine with :meth:`merge`: the merge of two halves equals one pass over the
whole (counts exactly, means and deviations to float64 rounding). :func:`~lstm_interp.gate_saturation`,
:func:`~lstm_interp.comparison.char_log_probs`, the analysis of ``lstm-interp analyze`` and the activation monitor
all compute through it; :meth:`GateSaturation.from_stats <lstm_interp.analysis.GateSaturation.from_stats>` turns
the counts into the saturation table.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch
from torch import Tensor

from lstm_interp.tracing import GATES, Trace

Key = tuple[str, str]  # (layer, gate)


class ActivationStats:
    """Running gate-saturation counts, cell-state moments and next-character log-probabilities.

    Args:
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        layer_names: the name prefix of each layer, as in the traces (``layers.0``, ...).
        low: a gate value below this is left-saturated (the paper's 0.1).
        high: above this, right-saturated (the paper's 0.9).

    Raises:
        ValueError: unless ``0 < low < high < 1``, or for an unknown cell type.

    Example::

        >>> stats = ActivationStats("lstm", ["layers.0", "layers.1"])  # doctest: +SKIP
        >>> for _, segment in trace_segments(model, book, 8192):  # doctest: +SKIP
        ...     stats.update(segment)
        >>> GateSaturation.from_stats(stats).integrators()  # doctest: +SKIP
        >>> stats.log_probs().mean()  # doctest: +SKIP
    """

    def __init__(self, cell: str, layer_names: Sequence[str], *, low: float = 0.1, high: float = 0.9) -> None:
        valid = all(isinstance(v, Real) and not isinstance(v, bool) for v in (low, high))
        if not (valid and 0 < low < high < 1):
            raise ValueError(f"gate saturation needs 0 < low < high < 1, got low={low!r}, high={high!r}")
        if cell not in GATES:
            raise ValueError(f"unknown cell type {cell!r}; expected one of {list(GATES)}")
        self.cell = cell
        self.layer_names = list(layer_names)
        self.low, self.high = float(low), float(high)
        self.num_steps = 0
        # (layer, gate) -> [left, right, finite] counts per unit, int64 (H,), in trace order.
        self.gate_counts: dict[Key, list[np.ndarray]] = {}
        # layer -> [count, mean, M2] of the finite cell-state values (all units together).
        self.cell_moments: dict[str, list[float]] = {}
        self.nonfinite: dict[str, int] = {}
        self._log_prob_parts: list[np.ndarray] = []  # each (n,) float32, in text order
        self._pending: Tensor | None = None  # (V,) the last step's log-probabilities, awaiting the next character
        self._first_token: int | None = None  # the first step's id, which resolves a pending row before it
        self._saw_log_probs = False

    @classmethod
    def of(cls, trace: Trace, *, low: float = 0.1, high: float = 0.9) -> ActivationStats:
        """The statistics of one trace (its architecture read from it)."""
        return cls(trace.cell, trace.layer_names, low=low, high=high).update(trace)

    # ------------------------------------------------------------------ feeding
    def update(self, trace: Trace, start: int | None = None) -> ActivationStats:
        """Add the next segment of the text (it continues the last one shown); returns ``self``.

        ``start`` (the segment's first step in the corpus) is accepted for :func:`~lstm_interp.analysis.corpus_pass`
        and not needed: the statistics do not depend on where a segment lies, only on the order of the segments.

        Uses what the trace holds: gates (``layers.i.forget_gate``, ...), the LSTM cell state, ``log_probs``;
        any of them may be missing.

        Raises:
            ValueError: a trace of another architecture.
        """
        if (trace.cell, trace.layer_names) != (self.cell, self.layer_names):
            raise ValueError(
                f"a trace of a {trace.cell} with layers {trace.layer_names} cannot be added to statistics of a "
                f"{self.cell} with layers {self.layer_names}"
            )
        for layer in self.layer_names:
            for gate in GATES[self.cell]:
                name = f"{layer}.{gate}"
                if name in trace:
                    self._count_gate((layer, gate), name, trace[name])
            if self.cell == "lstm" and f"{layer}.cell" in trace:
                self._add_cells(layer, trace[f"{layer}.cell"])
        if "log_probs" in trace:
            self._add_log_probs(trace["log_probs"], trace.tokens)
        elif self.num_steps == 0:
            self._first_token = int(trace.tokens[0]) if trace.num_steps else None
        self.num_steps += trace.num_steps
        return self

    def _count_gate(self, key: Key, name: str, values: Tensor) -> None:
        values = values.float()  # (T, H)
        finite = torch.isfinite(values)
        counts = [
            ((values < self.low) & finite).sum(dim=0).numpy(),
            ((values > self.high) & finite).sum(dim=0).numpy(),
            finite.sum(dim=0).numpy(),
        ]
        if key in self.gate_counts:
            for total, new in zip(self.gate_counts[key], counts, strict=True):
                total += new
        else:
            self.gate_counts[key] = [c.astype(np.int64) for c in counts]
        self._count_nonfinite(name, finite)

    def _add_cells(self, layer: str, values: Tensor) -> None:
        finite = torch.isfinite(values)
        kept = values[finite].double()
        n = int(kept.numel())
        if n:
            mean = float(kept.mean())
            m2 = float(((kept - mean) ** 2).sum())
            self.cell_moments[layer] = _combine(self.cell_moments.get(layer, [0, 0.0, 0.0]), [n, mean, m2])
        else:
            self.cell_moments.setdefault(layer, [0, 0.0, 0.0])
        self._count_nonfinite(f"{layer}.cell", finite)

    def _add_log_probs(self, log_probs: Tensor, tokens: Tensor) -> None:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        rows = log_probs.float()  # (T, V)
        if self.num_steps == 0:
            self._first_token = int(tokens[0])
        if self._pending is not None:
            self._log_prob_parts.append(self._pending[tokens[:1]].numpy())
        if len(tokens) > 1:
            self._log_prob_parts.append(rows[:-1].gather(1, tokens[1:, None]).squeeze(1).numpy())
        self._pending = rows[-1].clone()
        self._saw_log_probs = True

    def _count_nonfinite(self, name: str, finite: Tensor) -> None:
        bad = int(finite.numel() - finite.sum())
        if bad:
            self.nonfinite[name] = self.nonfinite.get(name, 0) + bad

    # ------------------------------------------------------------------ combining
    def merge(self, other: ActivationStats) -> ActivationStats:
        """These statistics followed by ``other``'s (the next part of the text): a new accumulator.

        The last prediction of this part is scored against the first character of ``other``. Merging is
        associative, so shards combine in any grouping as long as their order is kept.

        Raises:
            ValueError: statistics of another architecture or other thresholds.
        """
        if (other.cell, other.layer_names, other.low, other.high) != (self.cell, self.layer_names, self.low, self.high):
            raise ValueError(
                f"cannot merge statistics of a {other.cell} {other.layer_names} at thresholds ({other.low}, "
                f"{other.high}) into those of a {self.cell} {self.layer_names} at ({self.low}, {self.high})"
            )
        if other.num_steps == 0:
            return copy.deepcopy(self)
        if self.num_steps == 0:
            return copy.deepcopy(other)
        merged = copy.deepcopy(self)
        for key, counts in other.gate_counts.items():
            if key in merged.gate_counts:
                merged.gate_counts[key] = [a + b for a, b in zip(merged.gate_counts[key], counts, strict=True)]
            else:
                merged.gate_counts[key] = [c.copy() for c in counts]
        for layer, moments in other.cell_moments.items():
            merged.cell_moments[layer] = _combine(merged.cell_moments.get(layer, [0, 0.0, 0.0]), moments)
        for name, bad in other.nonfinite.items():
            merged.nonfinite[name] = merged.nonfinite.get(name, 0) + bad
        if merged._pending is not None and other._first_token is not None:
            merged._log_prob_parts.append(merged._pending[[other._first_token]].numpy())
        merged._log_prob_parts += [part.copy() for part in other._log_prob_parts]
        merged._pending = None if other._pending is None else other._pending.clone()
        merged._saw_log_probs = self._saw_log_probs or other._saw_log_probs
        merged.num_steps = self.num_steps + other.num_steps
        return merged

    # ------------------------------------------------------------------ results
    @property
    def has_gates(self) -> bool:
        """Whether any gate was counted (never for a plain RNN, or for traces filtered to other names)."""
        return bool(self.gate_counts)

    def log_probs(self) -> np.ndarray:
        """(T-1,) float32: entry ``t - 1`` is ``log P(text[t] | text[:t])`` in nats, over everything added.

        Raises:
            ValueError: no trace added held ``log_probs``.
        """
        if not self._saw_log_probs:
            raise ValueError("no trace added to these statistics held 'log_probs'; trace with them kept")
        parts = self._log_prob_parts
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, dtype=np.float32)

    def cell_mean(self) -> dict[str, float]:
        """Per layer, the mean of the finite LSTM cell-state values (NaN for a layer with none)."""
        return {layer: mean if n else math.nan for layer, (n, mean, _) in self.cell_moments.items()}

    def cell_std(self) -> dict[str, float]:
        """Per layer, the population standard deviation of the finite cell-state values."""
        moments = self.cell_moments.items()
        return {layer: math.sqrt(max(m2, 0.0) / n) if n else math.nan for layer, (n, _, m2) in moments}

    def __repr__(self) -> str:
        return (
            f"ActivationStats(cell={self.cell!r}, layers={self.layer_names}, steps={self.num_steps}, "
            f"gates={len(self.gate_counts)}, log_probs={self._saw_log_probs})"
        )


def _combine(a: list[float], b: list[float]) -> list[float]:
    """Chan et al.'s pairwise update of (count, mean, M2)."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    if n == 0:
        return [0, 0.0, 0.0]
    delta = mean_b - mean_a
    return [n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n]
