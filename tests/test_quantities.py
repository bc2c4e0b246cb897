"""The one table of per-layer quantities and their display scale."""

from __future__ import annotations

import math

import pytest
import torch

from lstm_interp.tracing import (
    GATES,
    MEMORY_GATE,
    QUANTITIES,
    QUANTITY_KINDS,
    QUANTITY_ORDER,
    display_values,
    quantity_kind,
    state_quantity,
)


def test_every_quantity_has_one_kind_and_a_place_in_the_order():
    names = {q for quantities in QUANTITIES.values() for q in quantities}
    assert names == set(QUANTITY_KINDS) == set(QUANTITY_ORDER)
    assert GATES == {"lstm": ("input_gate", "forget_gate", "output_gate"), "gru": ("reset_gate", "update_gate"),
                     "rnn": ()}  # fmt: skip
    assert all(MEMORY_GATE[cell] in GATES[cell] for cell in MEMORY_GATE)


def test_state_quantity_and_unknown_names():
    assert [state_quantity(c) for c in ("lstm", "gru", "rnn")] == ["cell", "hidden", "hidden"]
    with pytest.raises(ValueError, match=r"unknown cell type 'mamba'; expected one of \['lstm', 'gru', 'rnn'\]"):
        state_quantity("mamba")
    with pytest.raises(ValueError, match="unknown quantity 'gate'; the per-layer quantities are"):
        quantity_kind("gate")


def test_display_values_map_each_kind_onto_minus_one_to_one():
    gate = display_values(torch.tensor([0.0, 0.5, 1.0]), "forget_gate")
    assert gate.tolist() == [-1.0, 0.0, 1.0]
    cell = display_values(torch.tensor([-30.0, 0.0, 0.5, float("inf"), float("nan")]), "cell")
    assert cell[:3].tolist() == pytest.approx([-1.0, 0.0, math.tanh(0.5)]) and cell[3] == 1.0 and cell[4].isnan()
    assert display_values(torch.tensor([-0.25, 3.0]), "hidden").tolist() == [-0.25, 1.0]  # a ReLU RNN is clipped
