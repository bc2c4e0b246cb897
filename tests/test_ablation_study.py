"""``ablation_study`` on a hand-built model whose answer is known: one unit that the head reads to predict '"'."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lstm_interp.experiments.ablation_study import ablation_study

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = 'ab "x y" ab.\n{a "b" x} y "ab" .\n' * 6


@pytest.fixture
def quote_model(make_model):
    """Unit 3 of the one layer is always on (h near 0.76), and the head reads it only for '"'."""
    model = make_model(num_layers=1, hidden_size=16, seed=4)
    layer, H, quote = model.layers[0], 16, model.vocab.chars.index('"')
    with torch.no_grad():
        for gate in range(4):  # i, f, g, o: every gate of unit 3 saturated open, so c grows and h -> tanh(c)
            layer.bias_ih_l0[gate * H + 3] = 8.0
            layer.weight_hh_l0[gate * H + 3] = 0.0
            layer.weight_ih_l0[gate * H + 3] = 0.0
        model.head.weight.mul_(0.1)
        model.head.weight[:, 3] = 0.0
        model.head.weight[quote, 3] = 6.0
    return model


def test_the_unit_the_head_reads_for_quotes_is_found(quote_model):
    study = ablation_study(quote_model, TEXT, [("layers.0", 3), (0, 5)], '"', quantity="hidden", n_bootstrap=200)
    used, unused = study.units
    assert study.num_targets == TEXT.count('"') - (TEXT[0] == '"') and study.random_units
    assert ("layers.0", 3) not in study.random_units and len(study.random_units) == 14  # all the others
    assert used.target_delta > 1.0 and used.other_delta < 0  # quotes get harder, the rest easier
    assert used.percentile == 100.0 and used.percentile_ci[0] == 100.0
    lo, hi = used.target_delta_ci
    assert lo <= used.target_delta <= hi
    assert abs(unused.target_delta) < used.target_delta / 10 and unused.percentile < 100.0
    assert max(study.random_target_deltas) < used.target_delta
    json.dumps(study.to_dict(), allow_nan=False)
    assert "| layers.0:3 |" in study.to_markdown()


def test_feature_targets_mean_ablation_and_units_together(quote_model):
    study = ablation_study(
        quote_model, TEXT, [(0, 3)], "feature:inside_quotes", quantity="hidden", value="mean",
        together_feature="inside_quotes", k=3, n_random_sets=5, n_bootstrap=50,
    )  # fmt: skip
    # A mean ablation of an always-on unit barely changes it: the effect is small next to the zero ablation's.
    zero = ablation_study(quote_model, TEXT, [(0, 3)], "feature:inside_quotes", quantity="hidden", n_bootstrap=50)
    assert abs(study.units[0].target_delta) < abs(zero.units[0].target_delta)
    assert study.together is not None and len(study.together.units) == 3
    assert study.together_label == "top 3 of inside_quotes" and zero.together_label is None
    assert len(study.random_set_target_deltas) == 5 and study.targets == "where inside_quotes is on"


def test_a_mask_target_agrees_with_the_characters(quote_model):
    by_chars = ablation_study(quote_model, TEXT, [(0, 3)], '"', quantity="hidden", n_random=3, n_bootstrap=20)
    mask = np.array([c == '"' for c in TEXT])
    by_mask = ablation_study(quote_model, TEXT, [(0, 3)], mask, quantity="hidden", n_random=3, n_bootstrap=20)
    assert by_mask.units[0].target_delta == pytest.approx(by_chars.units[0].target_delta)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": [("layers.4", 0)]}, r"layer 'layers\.4' is not one of the model's"),
        ({"units": [(0, 99)]}, r"unit 99 of layers\.0: the layer has units 0 \.\. 15"),
        ({"units": []}, "at least one"),
        ({"targets": "Q"}, "leaves no target position"),
        ({"targets": "feature:nonsense"}, "nonsense"),
        ({"targets": [True, False]}, "one entry per character"),
        ({"quantity": "reset_gate"}, "'reset_gate'"),
        ({"value": "median"}, "'zero' or 'mean'"),
        ({"n_random": 0}, "`n_random` must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_before_any_ablation(quote_model, kwargs, message):
    arguments = {"units": [(0, 3)], "targets": '"'} | kwargs
    with pytest.raises((ValueError, KeyError), match=message):
        ablation_study(quote_model, TEXT, **arguments)


# ------------------------------------------------------------------------------------------------ the command
def test_the_ablate_command_writes_json_figure_and_manifest(quote_model, tmp_path):
    from cli_run import run_cli
    from pictures import assert_picture

    quote_model.save_pretrained(tmp_path / "model")
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = run_cli([
        "ablate", str(tmp_path / "model"), str(tmp_path / "text.txt"), "--unit", "layers.0.hidden:3",
        "--unit", "layers.0.hidden:5", "--target", '"', "--random", "6", "--out", str(out),
    ])  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["ablation.json", "ablation.png", "manifest.json"]
    study = json.loads((out / "ablation.json").read_text())
    assert [u["units"] for u in study["units"]] == [[["layers.0", 3]], [["layers.0", 5]]]
    assert study["units"][0]["percentile"] == 100.0 and len(study["random_units"]) == 6
    assert "| layers.0:3 |" in stdout
    assert_picture(out / "ablation.png")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "ablation" and manifest["texts"]["text"]["length"] == len(TEXT)
    code, _, err = run_cli(["ablate", str(tmp_path / "model"), str(tmp_path / "text.txt"), "--unit", "layers.7:0",
                            "--target", '"', "--out", str(tmp_path / "bad")])  # fmt: skip
    assert code == 1 and "layer 'layers.7' is not one of the model's" in err and not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def command_inputs(tmp_path_factory, make_model):
    """A saved one-layer model of 16 units and the text file the command reads."""
    folder = tmp_path_factory.mktemp("ablate")
    make_model(num_layers=1, hidden_size=16, seed=4).save_pretrained(folder / "model")
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    (folder / "unknown.txt").write_text(TEXT + "Z", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("unit", "text_file", "code", "message"),
    [
        # Issue 21: a MemoryError, "names no layer", "need at least one array to stack" and a hint naming a flag
        # the command lacks, before.
        ("layers.0:0-999999999", "text.txt", 2, "the range '0-999999999' in 'layers.0:0-999999999' names "
         "1,000,000,000 units"),
        ("layers.0:3-40", "text.txt", 1, "units 16-40 of layers.0: the layer has units 0 .. 15"),
        ("layers.0.foo_gate:0", "text.txt", 1, "'layers.0.foo_gate': unknown quantity 'foo_gate'; an LSTM layer "
         "has ['input_gate', 'forget_gate', 'cell_candidate', 'output_gate', 'cell', 'hidden']"),
        ("layers.0:0-15", "text.txt", 1, "`units` names every unit of layers.0 (16), so no random unit of the "
         "same layer(s) is left to compare with"),
        ("layers.0:3", "unknown.txt", 1, "'Z' (first at 192). Use only characters the model knows in TEXT_FILE"),
    ],
)  # fmt: skip
def test_the_ablate_command_names_what_is_wrong(command_inputs, tmp_path, unit, text_file, code, message):
    from cli_run import run_cli

    status, _, err = run_cli(["ablate", str(command_inputs / "model"), str(command_inputs / text_file), "--unit", unit,
                              "--target", '"', "--out", str(tmp_path / "out")])  # fmt: skip
    assert status == code, err
    assert message in err and "Traceback" not in err and "on_unknown" not in err
    assert not (tmp_path / "out").exists()
