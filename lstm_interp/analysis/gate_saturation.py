"""Gate saturation (Karpathy, Johnson & Fei-Fei 2015, Section 4.2): how often each gate unit is pinned near 0 or 1.

A gate is *left-saturated* at a time step when its activation is below ``low`` (0.1 in the paper) and
*right-saturated* above ``high`` (0.9). The paper plots, per unit, the fraction of steps spent in each regime and
finds forget-gate units that are right-saturated almost always: "integrators" that carry information over long
spans. Non-finite activations (a diverged run) are counted, left out of every fraction, and reported in
:attr:`GateSaturation.nonfinite` so the caller can warn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstm_interp.analysis.activation_stats import ActivationStats
from lstm_interp.tracing import GATES, MEMORY_GATE, Trace

_FORMAT_VERSION = 1

Key = tuple[str, str]  # (layer, gate)


@dataclass
class GateSaturation:
    """Per layer and gate, the fraction of time steps each unit spends left- and right-saturated.

    Args:
        low: activations below this are left-saturated.
        high: activations above this are right-saturated.
        cell: ``"lstm"`` or ``"gru"``.
        num_steps: time steps in the trace.
        left: (layer, gate) -> (H,) fraction of finite steps below ``low`` (NaN for a unit with no finite step).
        right: (layer, gate) -> (H,) fraction of finite steps above ``high``.
        cell_mean: layer -> mean of the LSTM cell state over all steps and units (when the trace has cells).
        cell_std: layer -> standard deviation of the cell state.
        nonfinite: NaN/inf values seen in the analysed tensors (gates and cells), all excluded.
        nonfinite_by_name: trace name -> its NaN/inf count, only for names that have some.

    Example::

        >>> sat = gate_saturation(trace(model, text))  # doctest: +SKIP
        >>> sat.left["layers.0", "forget_gate"].shape  # doctest: +SKIP
        (128,)
        >>> sat.integrators()  # doctest: +SKIP
        {'layers.0': 0.03, 'layers.1': 0.11}
    """

    low: float
    high: float
    cell: str
    num_steps: int
    left: dict[Key, np.ndarray]
    right: dict[Key, np.ndarray]
    cell_mean: dict[str, float] = field(default_factory=dict)
    cell_std: dict[str, float] = field(default_factory=dict)
    nonfinite: int = 0
    nonfinite_by_name: dict[str, int] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        """Layer names that have at least one gate, in trace order."""
        return list(dict.fromkeys(layer for layer, _ in self.left))

    @property
    def gates(self) -> list[str]:
        """Gate names present in any layer, in the cell's canonical order."""
        present = {gate for _, gate in self.left}
        return [g for g in GATES.get(self.cell, ()) if g in present] + sorted(present - set(GATES.get(self.cell, ())))

    def summary(self) -> dict[str, float]:
        """Flat scalars for loggers, named with ``/`` so TensorBoard groups them by layer.

        Returns:
            ``{"layers.0/forget_gate/left_saturated": mean over units, ".../right_saturated": ...,
            "layers.0/cell/mean": ..., "layers.0/cell/std": ...}``; a mean over units ignores units with no
            finite step (NaN only if no unit has one).
        """
        out: dict[str, float] = {}
        for (layer, gate), left in self.left.items():
            out[f"{layer}/{gate}/left_saturated"] = _nanmean(left)
            out[f"{layer}/{gate}/right_saturated"] = _nanmean(self.right[layer, gate])
        for layer, mean in self.cell_mean.items():
            out[f"{layer}/cell/mean"] = mean
            out[f"{layer}/cell/std"] = self.cell_std[layer]
        return out

    def integrators(self, threshold: float = 0.9) -> dict[str, float]:
        """Per layer, the share of units whose memory gate is right-saturated more than ``threshold`` of the time.

        The memory gate is the LSTM forget gate (the GRU update gate, which keeps ``h_{t-1}`` when near 1).

        Args:
            threshold: the fraction of steps above which a unit counts as an integrator, in (0, 1].

        Returns:
            layer -> share of that layer's units (units with no finite step count as non-integrators).

        Raises:
            ValueError: ``threshold`` outside (0, 1], or no layer has its memory gate in this analysis.
        """
        if not 0 < threshold <= 1:
            raise ValueError(f"`threshold` must be in (0, 1], got {threshold!r}")
        gate = MEMORY_GATE.get(self.cell, "forget_gate")
        shares = {layer: float(np.mean(right > threshold)) for (layer, g), right in self.right.items() if g == gate}
        if not shares:
            raise ValueError(f"integrators need the {gate!r} of some layer; this analysis has {sorted(self.left)}")
        return shares

    def rows(self) -> list[dict[str, Any]]:
        """One row per (layer, gate, unit): ``{"layer", "gate", "unit", "left", "right"}``, ready for a table."""
        return [
            {"layer": layer, "gate": gate, "unit": unit, "left": float(lo), "right": float(hi)}
            for (layer, gate), left in self.left.items()
            for unit, (lo, hi) in enumerate(zip(left, self.right[layer, gate], strict=True))
        ]

    @classmethod
    def from_stats(cls, stats: ActivationStats) -> GateSaturation:
        """The saturation table of the counts an :class:`~lstm_interp.analysis.ActivationStats` gathered.

        Raises:
            ValueError: the statistics counted no gate (a plain RNN, or traces without gates).
        """
        if not stats.has_gates:
            raise ValueError(
                f"gate saturation needs gate activations; these statistics of a {stats.cell!r} counted none"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            # 0 / 0 gives NaN for a unit with no finite step: "unknown", not "never saturated".
            left = {key: left / finite for key, (left, _, finite) in stats.gate_counts.items()}
            right = {key: right / finite for key, (_, right, finite) in stats.gate_counts.items()}
        return cls(
            low=stats.low,
            high=stats.high,
            cell=stats.cell,
            num_steps=stats.num_steps,
            left=left,
            right=right,
            cell_mean=stats.cell_mean(),
            cell_std=stats.cell_std(),
            nonfinite=sum(stats.nonfinite.values()),
            nonfinite_by_name=dict(stats.nonfinite),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN fractions become ``None``, so strict JSON parsers accept it)."""
        return {
            "format_version": _FORMAT_VERSION,
            "low": self.low,
            "high": self.high,
            "cell": self.cell,
            "num_steps": self.num_steps,
            "gates": [
                {"layer": layer, "gate": gate, "left": _to_list(left), "right": _to_list(self.right[layer, gate])}
                for (layer, gate), left in self.left.items()
            ],
            "cell_mean": {k: _to_json_float(v) for k, v in self.cell_mean.items()},
            "cell_std": {k: _to_json_float(v) for k, v in self.cell_std.items()},
            "nonfinite": self.nonfinite,
            "nonfinite_by_name": dict(self.nonfinite_by_name),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateSaturation:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: ``data`` is from a newer format or lacks a field.
        """
        version = data.get("format_version", _FORMAT_VERSION)
        if version > _FORMAT_VERSION:
            raise ValueError(f"gate saturation format {version} is newer than this version reads ({_FORMAT_VERSION})")
        try:
            gates = data["gates"]
            return cls(
                low=float(data["low"]),
                high=float(data["high"]),
                cell=str(data["cell"]),
                num_steps=int(data["num_steps"]),
                left={(g["layer"], g["gate"]): _from_list(g["left"]) for g in gates},
                right={(g["layer"], g["gate"]): _from_list(g["right"]) for g in gates},
                cell_mean={k: _from_json_float(v) for k, v in data.get("cell_mean", {}).items()},
                cell_std={k: _from_json_float(v) for k, v in data.get("cell_std", {}).items()},
                nonfinite=int(data.get("nonfinite", 0)),
                nonfinite_by_name=dict(data.get("nonfinite_by_name", {})),
            )
        except KeyError as err:
            raise ValueError(f"gate saturation dict lacks field {err}; it has {sorted(data)}") from None


def gate_saturation(trace: Trace, low: float = 0.1, high: float = 0.9) -> GateSaturation:
    """Measure how often every gate unit of every layer is left-saturated (< ``low``) or right-saturated (> ``high``).

    Uses whatever gates the trace kept (a ``names_filter`` may have dropped some) and, for an LSTM, the cell
    state's mean and standard deviation when the cells were kept. Float16/bfloat16 traces are read as float32.

    Args:
        trace: a :class:`~lstm_interp.Trace` of an LSTM or GRU.
        low: the left-saturation threshold (the paper's 0.1).
        high: the right-saturation threshold (the paper's 0.9).

    Returns:
        A :class:`GateSaturation`; check ``result.nonfinite`` and warn when it is not zero.

    Raises:
        ValueError: unless ``0 < low < high < 1``, or when the trace holds no gate (an RNN, or a trace filtered to
            other names); the message names the gates that are needed.

    Example::

        >>> sat = gate_saturation(trace(model, text), low=0.1, high=0.9)  # doctest: +SKIP
        >>> sat.summary()["layers.1/forget_gate/right_saturated"]  # doctest: +SKIP
        0.27
    """
    stats = ActivationStats(trace.cell, trace.layer_names, low=low, high=high).update(trace)
    if not stats.has_gates:
        gates = GATES.get(trace.cell, ())
        needed = [f"{layer}.{gate}" for layer in trace.layer_names for gate in gates or GATES["lstm"]]
        if not gates:
            raise ValueError(
                f"gate saturation needs gate activations such as {needed}; a {trace.cell!r} trace has no gates"
            )
        raise ValueError(
            f"gate saturation needs gate activations such as {needed}, but this trace holds only {list(trace)}; "
            "trace the model with a `names_filter` that keeps them"
        )
    return GateSaturation.from_stats(stats)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _to_json_float(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _from_json_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _to_list(values: np.ndarray) -> list[float | None]:
    return [_to_json_float(float(v)) for v in values]


def _from_list(values: list[float | None]) -> np.ndarray:
    return np.array([_from_json_float(v) for v in values], dtype=np.float64)
