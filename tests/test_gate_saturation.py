"""Gate saturation counts the right steps, skips non-finite values, and round-trips through JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_char_lstm

from lstm_interp import CharLSTM, Trace, trace
from lstm_interp.analysis import GateSaturation, gate_saturation

NAN = math.nan


def hand_trace(gates: dict[str, list[list[float]]], *, cell: str = "lstm", dtype: torch.dtype = torch.float32) -> Trace:
    """A one-layer trace holding exactly the given (T, H) values under ``layers.0.<name>``."""
    activations = {f"layers.0.{name}": torch.tensor(values, dtype=dtype) for name, values in gates.items()}
    steps = len(next(iter(gates.values())))
    return Trace(activations, text="x" * steps, tokens=torch.zeros(steps, dtype=torch.long), cell=cell, num_layers=1)


def tiny_model(cell: str = "lstm", layers: int = 2) -> tuple[CharLSTM, str]:
    text = 'She said "no."\nThen left.\n'
    return tiny_char_lstm(text, from_text=True, cell=cell, num_layers=layers), text


def test_known_fractions():
    forget = [[0.05, 0.95], [0.5, 0.95], [0.05, 0.5], [0.95, 0.01]]
    sat = gate_saturation(hand_trace({"forget_gate": forget}))
    np.testing.assert_allclose(sat.left["layers.0", "forget_gate"], [2 / 4, 1 / 4])
    np.testing.assert_allclose(sat.right["layers.0", "forget_gate"], [1 / 4, 2 / 4])
    assert sat.layers == ["layers.0"] and sat.gates == ["forget_gate"]
    assert sat.nonfinite == 0 and sat.num_steps == 4
    summary = sat.summary()
    assert summary == pytest.approx(
        {"layers.0/forget_gate/left_saturated": 3 / 8, "layers.0/forget_gate/right_saturated": 3 / 8}
    )


def test_thresholds_are_strict_and_configurable():
    values = [[0.1], [0.9], [0.3], [0.7]]
    default = gate_saturation(hand_trace({"input_gate": values}))
    assert default.left["layers.0", "input_gate"][0] == 0 and default.right["layers.0", "input_gate"][0] == 0
    wide = gate_saturation(hand_trace({"input_gate": values}), low=0.4, high=0.6)
    assert wide.left["layers.0", "input_gate"][0] == 0.5 and wide.right["layers.0", "input_gate"][0] == 0.5


def test_nonfinite_values_are_counted_and_excluded():
    forget = [[0.05, NAN], [0.95, NAN], [math.inf, NAN], [0.05, NAN]]
    cell = [[1.0, 2.0], [NAN, 2.0], [3.0, 2.0], [1.0, 2.0]]
    sat = gate_saturation(hand_trace({"forget_gate": forget, "cell": cell}))
    np.testing.assert_allclose(sat.left["layers.0", "forget_gate"][0], 2 / 3)
    np.testing.assert_allclose(sat.right["layers.0", "forget_gate"][0], 1 / 3)
    assert math.isnan(sat.left["layers.0", "forget_gate"][1])  # no finite step: unknown, not zero
    assert sat.nonfinite == 6
    assert sat.nonfinite_by_name == {"layers.0.forget_gate": 5, "layers.0.cell": 1}
    assert sat.cell_mean["layers.0"] == pytest.approx(13 / 7)
    assert sat.summary()["layers.0/forget_gate/left_saturated"] == pytest.approx(2 / 3)  # the NaN unit is skipped


def test_cell_statistics_in_summary():
    sat = gate_saturation(hand_trace({"forget_gate": [[0.5], [0.5]], "cell": [[1.0], [3.0]]}))
    assert sat.summary()["layers.0/cell/mean"] == pytest.approx(2.0)
    assert sat.summary()["layers.0/cell/std"] == pytest.approx(1.0)


def test_float16_trace():
    sat = gate_saturation(hand_trace({"output_gate": [[0.01], [0.99], [0.5]]}, dtype=torch.float16))
    np.testing.assert_allclose(sat.left["layers.0", "output_gate"], [1 / 3])
    np.testing.assert_allclose(sat.right["layers.0", "output_gate"], [1 / 3])


def test_integrators_share_per_layer():
    forget = [[0.95, 0.95, 0.5, 0.95]] * 9 + [[0.95, 0.5, 0.5, 0.5]]
    sat = gate_saturation(hand_trace({"forget_gate": forget}))
    assert sat.integrators() == {"layers.0": 0.25}  # unit 1 is right-saturated exactly 90%: not more
    assert sat.integrators(threshold=0.5) == {"layers.0": 0.75}
    with pytest.raises(ValueError, match=r"`threshold` must be in \(0, 1\], got 1.5"):
        sat.integrators(threshold=1.5)
    only_input = gate_saturation(hand_trace({"input_gate": forget}))
    with pytest.raises(ValueError, match="integrators need the 'forget_gate'"):
        only_input.integrators()


def test_real_lstm_trace_covers_every_layer_and_gate():
    model, text = tiny_model()
    sat = gate_saturation(trace(model, text))
    assert sat.layers == ["layers.0", "layers.1"]
    assert sat.gates == ["input_gate", "forget_gate", "output_gate"]
    assert all(v.shape == (8,) for v in sat.left.values())
    assert len(sat.rows()) == 2 * 3 * 8
    assert set(sat.rows()[0]) == {"layer", "gate", "unit", "left", "right"}
    assert {"layers.1/cell/mean", "layers.1/cell/std", "layers.1/output_gate/right_saturated"} <= set(sat.summary())
    assert set(sat.integrators()) == {"layers.0", "layers.1"}


def test_gru_uses_reset_and_update_gates():
    model, text = tiny_model("gru", layers=1)
    sat = gate_saturation(trace(model, text))
    assert sat.gates == ["reset_gate", "update_gate"]
    assert not any("cell" in key for key in sat.summary())
    assert set(sat.integrators()) == {"layers.0"}  # from the update gate


def test_json_round_trip_with_nan():
    forget = [[0.05, NAN], [0.95, NAN]]
    sat = gate_saturation(hand_trace({"forget_gate": forget, "cell": [[1.0, 1.0], [2.0, 2.0]]}))
    text = json.dumps(sat.to_dict(), allow_nan=False)  # strict JSON: NaN became null
    back = GateSaturation.from_dict(json.loads(text))
    assert back.low == sat.low and back.high == sat.high and back.cell == "lstm" and back.num_steps == 2
    np.testing.assert_array_equal(back.left["layers.0", "forget_gate"], sat.left["layers.0", "forget_gate"])
    np.testing.assert_array_equal(back.right["layers.0", "forget_gate"], sat.right["layers.0", "forget_gate"])
    assert back.nonfinite == 2 and back.nonfinite_by_name == sat.nonfinite_by_name
    assert back.summary() == pytest.approx(sat.summary())
    with pytest.raises(ValueError, match="lacks field 'gates'"):
        GateSaturation.from_dict({"low": 0.1, "high": 0.9, "cell": "lstm", "num_steps": 2})
    with pytest.raises(ValueError, match="newer"):
        GateSaturation.from_dict({**sat.to_dict(), "format_version": 99})


@pytest.mark.parametrize(("low", "high"), [(0.9, 0.1), (0.0, 0.9), (0.1, 1.0), (0.5, 0.5), (-0.1, 0.9)])
def test_rejects_bad_thresholds(low, high):
    tr = hand_trace({"forget_gate": [[0.5]]})
    with pytest.raises(ValueError, match=rf"0 < low < high < 1, got low={low}, high={high}"):
        gate_saturation(tr, low=low, high=high)


def test_rnn_trace_has_no_gates():
    model, text = tiny_model("rnn", layers=1)
    with pytest.raises(ValueError, match=r"needs gate activations such as \['layers.0.input_gate'.*'rnn' trace has no"):
        gate_saturation(trace(model, text))


def test_filtered_trace_without_gates():
    model, text = tiny_model()
    with pytest.raises(ValueError, match=r"layers.0.forget_gate.*holds only \['layers.0.cell', 'layers.1.cell'\]"):
        gate_saturation(trace(model, text, names_filter="*.cell"))
