"""Unit specs (``lstm_interp/interventions/unit_specs.py``): what ``(name, units, value)`` means on a model."""

from __future__ import annotations

import pytest
import torch

from lstm_interp.interventions import Ablate, Clamp, InterventionError, Scale, generate_with_interventions
from lstm_interp.interventions.unit_specs import (
    MAX_SPEC_UNITS,
    MixedQuantitiesError,
    ablation_units,
    check_unit_spec,
    intervention_name,
    parse_unit_spec,
    spec_interventions,
    spec_text,
)


def test_spec_text_leaves_out_the_value() -> None:
    assert spec_text(("layers.1", [3, 4], 2.0)) == "layers.1:3,4"


@pytest.mark.parametrize(
    ("name", "cell", "expected"),
    [("layers.1", "lstm", "layers.1.cell"), ("layers.1", "gru", "layers.1.hidden"),
     ("layers.0", "rnn", "layers.0.hidden"), ("layers.1.forget_gate", "lstm", "layers.1.forget_gate"),
     ("layers.0.update_gate", "gru", "layers.0.update_gate")],
)  # fmt: skip
def test_intervention_name(name: str, cell: str, expected: str) -> None:
    assert intervention_name(name, cell) == expected


def test_intervention_name_refuses_a_quantity_the_cell_lacks() -> None:
    with pytest.raises(InterventionError, match=r"'layers.0.forget_gate': unknown quantity 'forget_gate'; a GRU layer"):
        intervention_name("layers.0.forget_gate", "gru")


@pytest.mark.parametrize(
    ("op", "spec", "message"),
    [
        ("clamp", ("layers.1", [0], None), "'layers.1:0' needs '=NUMBER' after the units, e.g. layers.1:0=2.5"),
        ("scale", ("layers.1", [0, 2], None), "'layers.1:0,2' needs '=NUMBER'"),
        ("ablate", ("layers.1", [0], 2.0), "layers.1:0=2 sets units to zero and takes no '=VALUE'"),
        ("scale", ("layers.0", [0], 1e300), "`factor` of scale layers.0:0 must be 0 or a finite number"),
        ("clamp", ("layers.0.forget_gate", [0], 5.0), "'forget_gate' is a sigmoid gate, which only takes values in"),
        ("clamp", ("layers.0.cell_candidate", [0], -1.5), "is a tanh gate"),
        ("nudge", ("layers.0", [0], 1.0), "`op` must be one of ['clamp', 'ablate', 'scale'], got 'nudge'"),
    ],
)
def test_check_unit_spec_refuses_naming_the_spec(op: str, spec: tuple, message: str) -> None:
    with pytest.raises(InterventionError) as caught:
        check_unit_spec(op, spec)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_check_unit_spec_labels_the_scale_factor_as_asked_and_accepts_good_specs() -> None:
    with pytest.raises(InterventionError, match=r"`factor` of --scale layers\.0:0 must be"):
        check_unit_spec("scale", ("layers.0", [0], 1e300), label="--scale")
    check_unit_spec("clamp", ("layers.1", [0], 50.0))  # a layer's state has no range
    check_unit_spec("clamp", ("layers.0.forget_gate", [0], 1.0))
    check_unit_spec("scale", ("layers.0", [0], 0.0))
    check_unit_spec("ablate", ("layers.0", [0], None))


def test_spec_interventions_builds_clamps_then_ablations_then_scalings() -> None:
    steps = slice(5, None)
    built = spec_interventions(
        "lstm",
        scale=[("layers.0.forget_gate", [3], 0.5)],
        ablate=[("layers.0", [2], None)],
        clamp=[("layers.1.hidden", [0, 1], 1.0)],
        steps=steps,
    )
    assert [type(iv) for iv in built] == [Clamp, Ablate, Scale]
    assert [iv.name for iv in built] == ["layers.1.hidden", "layers.0.cell", "layers.0.forget_gate"]
    assert [iv.units for iv in built] == [(0, 1), (2,), (3,)]
    assert all(iv.steps == steps for iv in built)
    assert torch.equal(built[0].value, torch.ones(2)) and built[2].factor == 0.5 and built[1].value == "zero"


def test_spec_interventions_checks_values_and_leaves_unit_ranges_to_the_model(make_model) -> None:
    with pytest.raises(InterventionError, match="needs '=NUMBER'"):
        spec_interventions("lstm", clamp=[("layers.1", [0], None)])
    model = make_model()  # 8 units per layer
    (clamp,) = spec_interventions(model.config.cell, clamp=[("layers.1", [99], 1.0)])
    with pytest.raises(InterventionError, match=r"units \[99\] of 'layers.1.cell'"):
        generate_with_interventions(model, "ab", 3, [clamp], seed=0)


def test_ablation_units_flattens_the_specs_in_order() -> None:
    quantity, units = ablation_units([("layers.1", [254, 255], None), ("layers.0.cell", [3], None)], "lstm")
    assert quantity == "cell"
    assert units == [("layers.1", 254), ("layers.1", 255), ("layers.0", 3)]
    assert ablation_units([("layers.0", [1], None)], "gru") == ("hidden", [("layers.0", 1)])


def test_ablation_units_refuses_mixed_quantities_and_no_specs() -> None:
    with pytest.raises(MixedQuantitiesError, match=r"every unit must be of one quantity, got \['cell', 'hidden'\]"):
        ablation_units([("layers.1", [1], None), ("layers.0.hidden", [2], None)], "lstm")
    assert issubclass(MixedQuantitiesError, InterventionError) and issubclass(MixedQuantitiesError, ValueError)
    with pytest.raises(InterventionError, match="names no units to ablate"):
        ablation_units([], "lstm")
    with pytest.raises(InterventionError, match="unknown quantity 'foo_gate'"):
        ablation_units([("layers.1.foo_gate", [1], None)], "lstm")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("layers.1:254", ("layers.1", [254], None)),
        (" layers.1.cell:254,255=2.5 ", ("layers.1.cell", [254, 255], 2.5)),
        ("layers.0.forget_gate:3=1", ("layers.0.forget_gate", [3], 1.0)),
        ("layers.0:0-2,7=-1e-1", ("layers.0", [0, 1, 2, 7], -0.1)),
    ],
)
def test_parse_unit_spec_reads_the_written_form(text: str, expected: tuple) -> None:
    assert parse_unit_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("layers.1", "expected LAYER"),
        ("254", "expected LAYER"),
        ("layers:1", "expected LAYER"),
        ("layers.1:", "expected LAYER"),
        ("layers.1:a", "units must be indices"),
        ("layers.1:1,,2", "units must be indices"),
        ("layers.1:5-3", "ends before it starts"),
        ("layers.1:3,3", "repeat a unit"),
        ("layers.1:3=", "finite number, got ''"),
        ("layers.1:3=nan", "finite number, got 'nan'"),
        ("layers.1:3=x", "finite number, got 'x'"),
        ("layers.1:3=inf", "finite number, got 'inf'"),
        (f"layers.1:0-{MAX_SPEC_UNITS}", f"names {MAX_SPEC_UNITS + 1:,} units"),  # refused before it is expanded
    ],
)
def test_parse_unit_spec_refuses_bad_text_as_an_intervention_error_quoting_it(text: str, match: str) -> None:
    with pytest.raises(InterventionError, match=match) as caught:
        parse_unit_spec(text)
    assert repr(text) in str(caught.value)
