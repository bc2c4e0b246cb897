"""ActivationStats: the one streaming pass, its merge, and the analyses that compute through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstm_interp import gate_saturation, trace
from lstm_interp.analysis import ActivationStats, GateSaturation
from lstm_interp.comparison import char_log_probs
from lstm_interp.tracing import Trace, trace_segments

TEXT = 'a "b" {a}\nx.y "ab {x}" y\n' * 12


def whole_and_halves(model, text: str, cut: int) -> tuple[ActivationStats, ActivationStats]:
    """Statistics of one pass over the text, and the merge of its two halves (the state carried across)."""
    whole = ActivationStats.of(trace(model, text))
    first = trace(model, text[:cut])
    second = trace(model, text[cut:], state=first.final_state)
    return whole, ActivationStats.of(first).merge(ActivationStats.of(second))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("cut", [1, 57, len(TEXT) - 1])
def test_merge_of_two_halves_equals_one_pass(make_model, cell, cut):
    model = make_model(cell=cell, weight_scale=2.0)
    # cut == 1: a first half of one step, which has a pending prediction and no row of its own.
    whole, merged = whole_and_halves(model, TEXT, cut)
    assert merged.num_steps == whole.num_steps == len(TEXT)
    assert merged.gate_counts.keys() == whole.gate_counts.keys() and whole.gate_counts
    for key, counts in whole.gate_counts.items():
        for got, expected in zip(merged.gate_counts[key], counts, strict=True):
            np.testing.assert_array_equal(got, expected)  # counts are exact
    np.testing.assert_allclose(merged.log_probs(), whole.log_probs(), atol=1e-5)
    assert len(merged.log_probs()) == len(TEXT) - 1
    for layer, mean in whole.cell_mean().items():
        assert merged.cell_mean()[layer] == pytest.approx(mean, rel=1e-6, abs=1e-9)
        assert merged.cell_std()[layer] == pytest.approx(whole.cell_std()[layer], rel=1e-6)
    saturation = GateSaturation.from_stats(merged)
    reference = gate_saturation(trace(model, TEXT))
    for key in reference.left:
        np.testing.assert_allclose(saturation.left[key], reference.left[key])
        np.testing.assert_allclose(saturation.right[key], reference.right[key])


def test_merge_is_associative_and_keeps_text_order(make_model):
    model = make_model()
    parts = [ActivationStats.of(tr) for _, tr in trace_segments(model, TEXT, 40)]
    left = parts[0].merge(parts[1]).merge(parts[2])
    right = parts[0].merge(parts[1].merge(parts[2]))
    np.testing.assert_array_equal(left.log_probs(), right.log_probs())
    # The wrong order scores other characters: merging is not commutative, and must not pretend to be.
    swapped = parts[1].merge(parts[0])
    assert not np.allclose(swapped.log_probs(), parts[0].merge(parts[1]).log_probs())


def test_log_probs_match_the_trace_row_by_row(make_model):
    model = make_model()
    tr = trace(model, TEXT)
    expected = tr["log_probs"][:-1].gather(1, tr.tokens[1:, None]).squeeze(1).numpy()
    np.testing.assert_allclose(ActivationStats.of(tr).log_probs(), expected, atol=1e-6)
    np.testing.assert_allclose(char_log_probs(model, TEXT, segment_chars=13), expected, atol=1e-5)


def test_nonfinite_values_are_counted_and_left_out(make_model):
    tr = trace(make_model(), TEXT[:20])
    gate = tr["layers.0.forget_gate"].clone()
    gate[3, 2] = float("nan")
    gate[4, 2] = float("inf")
    stats = ActivationStats.of(tr.with_activation("layers.0.forget_gate", gate))
    assert stats.nonfinite == {"layers.0.forget_gate": 2}
    *_, finite = stats.gate_counts["layers.0", "forget_gate"]
    assert finite[2] == 18 and finite[0] == 20


def test_a_plain_rnn_has_no_gates_and_no_cells(make_model):
    stats = ActivationStats.of(trace(make_model(cell="rnn"), TEXT[:30]))
    assert not stats.has_gates and stats.cell_mean() == {}
    with pytest.raises(ValueError, match="counted none"):
        GateSaturation.from_stats(stats)
    assert len(stats.log_probs()) == 29


def test_bad_thresholds_architecture_and_missing_log_probs(make_model):
    with pytest.raises(ValueError, match=r"0 < low < high < 1, got low=0.9, high=0.1"):
        ActivationStats("lstm", ["layers.0"], low=0.9, high=0.1)
    with pytest.raises(ValueError, match="unknown cell type 'transformer'"):
        ActivationStats("transformer", ["layers.0"])
    lstm = ActivationStats.of(trace(make_model(), TEXT[:10]))
    gru = ActivationStats.of(trace(make_model(cell="gru"), TEXT[:10]))
    with pytest.raises(ValueError, match="cannot merge statistics of a gru"):
        lstm.merge(gru)
    with pytest.raises(ValueError, match="cannot be added to statistics of a lstm"):
        lstm.update(trace(make_model(cell="gru"), TEXT[:10]))
    cells_only = ActivationStats.of(trace(make_model(), TEXT[:10], names_filter="layers.*.cell"))
    with pytest.raises(ValueError, match="held 'log_probs'"):
        cells_only.log_probs()


def test_merging_an_empty_accumulator_changes_nothing(make_model):
    tr = trace(make_model(), TEXT[:25])
    stats = ActivationStats.of(tr)
    empty = ActivationStats(tr.cell, tr.layer_names)
    for merged in (stats.merge(empty), empty.merge(stats)):
        np.testing.assert_array_equal(merged.log_probs(), stats.log_probs())
        assert merged.num_steps == 25


def test_update_accepts_a_hand_built_trace():
    # Gates only, no log-probabilities: the counts still come out (as gate_saturation needs).
    values = torch.tensor([[0.05], [0.5], [0.95], [0.99]])
    tr = Trace({"layers.0.forget_gate": values}, text="abcd", tokens=torch.arange(4), cell="lstm", num_layers=1)
    left, right, finite = ActivationStats.of(tr).gate_counts["layers.0", "forget_gate"]
    assert (left[0], right[0], finite[0]) == (1, 2, 4)
