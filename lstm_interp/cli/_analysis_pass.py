"""One pass of a model over a long text for :func:`~lstm_interp.cli.run_analysis.run_analysis`.

The text is traced in segments with the state carried across, keeping only what the analysis needs of each: the
per-layer cell state (the hidden state for a GRU or RNN), gate-saturation counts (the same rules as
:func:`~lstm_interp.analysis.gate_saturation`: fractions of finite steps below 0.1 / above 0.9) and the
log-probability of each next character. A segment's gates are dropped once counted, so memory is the stored states
plus one segment, never the whole text's gates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lstm_interp.analysis import GateSaturation
from lstm_interp.analysis.gate_saturation import GATES
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import Trace, trace

SATURATION_LOW, SATURATION_HIGH = 0.1, 0.9


@dataclass
class AnalysisPass:
    """What one pass of the model over the text gives: per-layer states, gate saturation, log-probabilities."""

    states: Trace
    saturation: GateSaturation | None
    log_probs: np.ndarray  # (T-1,) float32: log P(text[t] | text[:t])


def one_pass(model: CharLSTM, text: str, ids: torch.Tensor, segment_chars: int) -> AnalysisPass:
    """Trace ``ids`` segment by segment: keep the per-layer state quantity, count gate saturation, score characters."""
    cfg = model.config
    T = len(ids)
    layers = [f"layers.{i}" for i in range(cfg.num_layers)]
    quantity = "cell" if cfg.cell == "lstm" else "hidden"
    gates = GATES.get(cfg.cell, ())
    states = {f"{layer}.{quantity}": torch.empty(T, cfg.hidden_size) for layer in layers}
    zeros = lambda: torch.zeros(cfg.hidden_size, dtype=torch.int64)  # noqa: E731
    counts = {(layer, gate): [zeros(), zeros(), zeros()] for layer in layers for gate in gates}  # left, right, finite
    cell_sums = {layer: [0.0, 0.0, 0] for layer in layers}  # sum, sum of squares, finite count
    nonfinite: dict[str, int] = {}
    log_probs = np.empty(T - 1, dtype=np.float32)
    names = [f"layers.*.{quantity}", *(f"layers.*.{gate}" for gate in gates), "log_probs"]
    state = None
    for start in range(0, T, segment_chars):
        segment = ids[start : start + segment_chars]
        tr = trace(model, segment, names_filter=names, state=state)
        state = tr.final_state
        for layer in layers:
            values = tr[f"{layer}.{quantity}"]
            states[f"{layer}.{quantity}"][start : start + len(segment)] = values
            if quantity == "cell":
                finite = torch.isfinite(values)
                kept = values[finite].double()
                sums = cell_sums[layer]
                sums[0] += float(kept.sum())
                sums[1] += float((kept * kept).sum())
                sums[2] += int(kept.numel())
                _count_nonfinite(nonfinite, f"{layer}.cell", finite)
            for gate in gates:
                values = tr[f"{layer}.{gate}"]
                finite = torch.isfinite(values)
                left, right, counted = counts[layer, gate]
                left += ((values < SATURATION_LOW) & finite).sum(dim=0)
                right += ((values > SATURATION_HIGH) & finite).sum(dim=0)
                counted += finite.sum(dim=0)
                _count_nonfinite(nonfinite, f"{layer}.{gate}", finite)
        targets = ids[start + 1 : start + 1 + len(segment)]
        rows = tr["log_probs"][: len(targets)]
        log_probs[start : start + len(targets)] = rows.gather(1, targets[:, None]).squeeze(1).numpy()
    saturation = None
    if gates:
        # 0 / 0 = NaN for a unit with no finite step, as gate_saturation() does.
        fraction = lambda n, d: (n.double() / d.double()).numpy()  # noqa: E731
        cell_mean, cell_std = {}, {}
        for layer, (total, squares, n) in cell_sums.items():
            if quantity == "cell":
                mean = total / n if n else math.nan
                cell_mean[layer] = mean
                cell_std[layer] = math.sqrt(max(0.0, squares / n - mean * mean)) if n else math.nan
        saturation = GateSaturation(
            low=SATURATION_LOW,
            high=SATURATION_HIGH,
            cell=cfg.cell,
            num_steps=T,
            left={key: fraction(left, counted) for key, (left, _, counted) in counts.items()},
            right={key: fraction(right, counted) for key, (_, right, counted) in counts.items()},
            cell_mean=cell_mean,
            cell_std=cell_std,
            nonfinite=sum(nonfinite.values()),
            nonfinite_by_name=nonfinite,
        )
    kept = Trace(states, text=text, tokens=ids, cell=cfg.cell, num_layers=cfg.num_layers)
    return AnalysisPass(kept, saturation, log_probs)


def _count_nonfinite(counts: dict[str, int], name: str, finite: torch.Tensor) -> None:
    bad = int(finite.numel() - finite.sum())
    if bad:
        counts[name] = counts.get(name, 0) + bad
