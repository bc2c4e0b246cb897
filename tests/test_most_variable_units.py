"""most_variable_units: the one ranking of units the figures, the report and the callback use."""

from __future__ import annotations

import pytest
import torch

from lstm_interp import trace
from lstm_interp.tracing import Trace, most_variable_units


def hand_trace(cell: list[list[float]]) -> Trace:
    values = torch.tensor(cell)
    return Trace({"layers.0.cell": values}, text=None, tokens=torch.arange(len(cell)), cell="lstm", num_layers=1)


def test_ranks_on_the_shown_value_not_the_raw_one():
    # Unit 0 swings between 20 and 40: raw variance 100, but tanh shows it pinned at +1. Unit 1 switches between
    # -0.9 and +0.9 tanh, which is what a reader sees change. Unit 2 is constant.
    swing = 1.4722  # atanh(0.9)
    tr = hand_trace([[20.0, swing, 0.3], [40.0, -swing, 0.3], [20.0, swing, 0.3], [40.0, -swing, 0.3]])
    ranked = most_variable_units(tr, count=3)
    assert [row.unit for row in ranked] == [1, 0, 2]
    assert ranked[0].variance == pytest.approx(0.81, abs=1e-3) and ranked[2].variance == 0.0
    assert ranked[0].layer == "layers.0"


def test_last_layer_by_default_and_nan_counts_as_zero(make_model):
    tr = trace(make_model(), 'a "b" {x}\n' * 5)
    assert {row.layer for row in most_variable_units(tr, "hidden", 8)} == {"layers.1"}
    assert len(most_variable_units(tr, "forget_gate", 3, layer="layers.0")) == 3
    broken = hand_trace([[float("nan"), 0.0], [float("nan"), 1.0]])
    assert most_variable_units(broken, count=1)[0].unit == 1


def test_bad_arguments(make_model):
    tr = trace(make_model(), "ab")
    with pytest.raises(ValueError, match="`count` must be a positive integer, got 0"):
        most_variable_units(tr, count=0)
    with pytest.raises(ValueError, match=r"unknown layer 'layers\.7'"):
        most_variable_units(tr, layer="layers.7")


def test_skip_flat_leaves_out_pinned_units_but_keeps_switching_ones():
    swing = 1.4722  # atanh(0.9): the shown value switches between -0.9 and +0.9
    pinned = [3.0] * 18 + [0.0, 3.0]  # tanh(3) = 0.995 with one blip to 0: a solid band in a figure
    switching = [swing if (t // 3) % 2 else -swing for t in range(20)]
    tiny = [0.01 * (t % 2) for t in range(20)]  # varies, but by nothing a reader can see
    tr = hand_trace([list(row) for row in zip(pinned, switching, tiny, strict=True)])
    assert most_variable_units(tr, count=3)[0].unit == 1
    assert [row.unit for row in most_variable_units(tr, count=3, skip_flat=True)] == [1]
    assert [row.unit for row in most_variable_units(tr, count=3, start=0, stop=10, skip_flat=True)] == [1]
    all_flat = hand_trace([[3.0, 0.2]] * 6)
    assert len(most_variable_units(all_flat, count=2, skip_flat=True)) == 2  # nothing left out if all are flat
