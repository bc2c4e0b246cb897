"""``select_cells``: LSTMVis's on/off pattern over a span, on hand-made traces whose answer is known, and a real one."""

from __future__ import annotations

import math

import pytest
import torch

from lstm_interp.analysis.select_cells import select_cells
from lstm_interp.tracing import Trace, trace

pytestmark = pytest.mark.usefixtures("one_thread")


def hand_trace(layers: list[list[list[float]]], quantity: str = "cell", cell: str = "lstm") -> Trace:
    """A trace whose ``quantity`` of layer i is ``layers[i]``, given unit by unit (H lists of T values)."""
    values = {f"layers.{i}.{quantity}": torch.tensor(units).T for i, units in enumerate(layers)}
    steps = len(layers[0][0])
    return Trace(
        values, text="x" * steps, tokens=torch.zeros(steps, dtype=torch.long), cell=cell, num_layers=len(layers)
    )


ON, OFF = 1.0, -1.0
# Steps 0..7; the span is (3, 6).
UNITS = [
    [OFF, OFF, OFF, ON, ON, ON, OFF, OFF],  # 0: off before, on inside, off after: the pattern exactly
    [OFF, OFF, ON, ON, ON, ON, OFF, OFF],  # 1: already on before the span
    [OFF, OFF, OFF, ON, ON, ON, ON, OFF],  # 2: still on after it
    [OFF, OFF, OFF, ON, OFF, ON, OFF, OFF],  # 3: off inside it
    [OFF, OFF, OFF, ON, ON, 0.3, OFF, OFF],  # 4: exactly at the threshold at step 5: not on (value > threshold)
]


def test_the_pattern_is_off_before_on_inside_off_after():
    tr = hand_trace([UNITS])
    assert select_cells(tr, (3, 6)) == [("layers.0", 0), ("layers.0", 2)]  # before=1, after=0 (LSTMVis's defaults)
    assert select_cells(tr, (3, 6), after=1) == [("layers.0", 0)]
    assert select_cells(tr, (3, 6), before=0) == [("layers.0", 0), ("layers.0", 1), ("layers.0", 2)]
    assert select_cells(tr, (3, 6), threshold=0.25) == [("layers.0", 0), ("layers.0", 2), ("layers.0", 4)]
    # Two steps before must be off: unit 1 is on at step 2, the others off at 1 and 2.
    assert select_cells(tr, (3, 6), before=2, after=2) == [("layers.0", 0)]


def test_padding_is_clipped_at_the_edges_of_the_text():
    tr = hand_trace([[[ON, ON, OFF, OFF], [ON, ON, ON, ON], [OFF, ON, OFF, OFF]]])
    # Nothing before step 0 to be off: before=3 asks only what the text has.
    assert select_cells(tr, (0, 2), before=3, after=1) == [("layers.0", 0)]
    assert select_cells(tr, (0, 4), before=1, after=5) == [("layers.0", 1)]
    assert select_cells(tr, (1, 2), before=1) == [("layers.0", 2)]


def test_every_layer_or_one_chosen_by_name_or_index_and_other_quantities():
    tr = hand_trace([UNITS, [UNITS[1], UNITS[0]]])
    assert select_cells(tr, (3, 6), after=1) == [("layers.0", 0), ("layers.1", 1)]
    assert select_cells(tr, (3, 6), after=1, layer=1) == [("layers.1", 1)]
    assert select_cells(tr, (3, 6), after=1, layer="layers.0") == [("layers.0", 0)]
    gates = hand_trace([[[0.1, 0.9, 0.9, 0.1], [0.9, 0.9, 0.9, 0.9]]], quantity="forget_gate")
    assert select_cells(gates, (1, 3), threshold=0.5, quantity="forget_gate", after=1) == [("layers.0", 0)]
    gru = hand_trace([[[OFF, ON, ON, OFF]]], quantity="hidden", cell="gru")
    assert select_cells(gru, (1, 3)) == [("layers.0", 0)]  # the default quantity is the GRU's state, `hidden`


def test_on_a_real_trace_it_is_the_pattern_by_brute_force(make_model):
    model = make_model(weight_scale=3.0, seed=2)
    text = 'ab "x y" ab.\n{a "b" x} y "ab" .\n' * 3
    tr = trace(model, text)
    found = 0
    for span in [(3, 7), (16, 18), (10, 11), (0, 5), (90, 96)]:
        for before, after in [(1, 0), (2, 1), (0, 0)]:
            cells = select_cells(tr, span, before=before, after=after)
            expected = []
            for layer in tr.layer_names:
                values = tr[f"{layer}.cell"]
                for unit in range(values.shape[1]):
                    on = [bool(values[t, unit] > 0.3) for t in range(len(text))]
                    inside = all(on[span[0] : span[1]])
                    outside = not any(on[max(0, span[0] - before) : span[0]] + on[span[1] : span[1] + after])
                    if inside and outside:
                        expected.append((layer, unit))
            assert cells == expected
            found += len(cells)
    assert found > 0  # the spans above select something, so the comparison is not vacuous


def test_bad_arguments_are_named():
    tr = hand_trace([UNITS])
    with pytest.raises(ValueError, match=r"`span` \(4, 4\) is empty"):
        select_cells(tr, (4, 4))
    with pytest.raises(ValueError, match=r"outside the text's steps 0 \.\. 8"):
        select_cells(tr, (5, 9))
    with pytest.raises(ValueError, match="outside"):
        select_cells(tr, (-1, 3))
    with pytest.raises(ValueError, match="must be a pair"):
        select_cells(tr, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two integer steps"):
        select_cells(tr, (1.0, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`before` must be a number of steps >= 0, got -1"):
        select_cells(tr, (3, 6), before=-1)
    with pytest.raises(ValueError, match="`after`"):
        select_cells(tr, (3, 6), after=True)
    with pytest.raises(ValueError, match="finite number, got nan"):
        select_cells(tr, (3, 6), threshold=math.nan)
    with pytest.raises(ValueError, match="unknown quantity 'cel'"):
        select_cells(tr, (3, 6), quantity="cel")
    with pytest.raises(ValueError, match=r"unknown layer 'layers.3'.*\['layers.0'\]"):
        select_cells(tr, (3, 6), layer="layers.3")
    with pytest.raises(ValueError, match="unknown layer 1"):
        select_cells(tr, (3, 6), layer=1)
    with pytest.raises(KeyError, match=r"layers\.0\.hidden"):
        select_cells(tr, (3, 6), quantity="hidden")  # an LSTM quantity this trace did not keep
    gates = hand_trace([[[0.1, 0.9, 0.9, 0.1]]], quantity="input_gate")
    with pytest.raises(ValueError, match=r"1.5 is outside the range of 'input_gate' \(a sigmoid gate, 0..1\)"):
        select_cells(gates, (1, 3), threshold=1.5, quantity="input_gate")
    gru = hand_trace([[[OFF, ON, ON, OFF]]], quantity="hidden", cell="gru")
    with pytest.raises(ValueError, match="a gru trace has no quantity 'cell'"):
        select_cells(gru, (1, 3), quantity="cell")
    with pytest.raises(TypeError, match="must be a Trace"):
        select_cells({"layers.0.cell": torch.zeros(3, 2)}, (0, 1))  # type: ignore[arg-type]
