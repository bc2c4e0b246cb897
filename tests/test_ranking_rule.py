"""find_cells's ranking rule (visible units first) and controls, on planted units with known answers.

Each test builds a trace by hand: a text, then units whose cell states are set as functions of the text's features,
so the right order is known before anything is scored.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lstm_interp import CharLSTM, CharLSTMConfig, CharVocab, Trace, trace
from lstm_interp.analysis import MIN_EFFECT, ControlScore, find_cells, visible_effect
from lstm_interp.analysis.explain_unit import explain_unit
from lstm_interp.features import UnknownFeatureError, compute_feature
from lstm_interp.report.run_analysis import run_analysis

PROSE = (
    'He said, "Come here." She did not.\n'
    'Then "no," he said, "not now" and left.\n'
    "Nobody spoke for a while after that.\n\n"
) * 40
CODE = (
    "if (a > b) {\n  x = f(a, g(b));\n}\n"
    "y = h(c) + k(d);\nif (p(q) && r) {\n  z = m(n);\n}\n"
) * 40


def planted(text: str, columns: dict[str, np.ndarray], layer: str = "layers.0") -> Trace:
    """A one-layer trace of ``text`` whose cell-state units are the given columns (in order)."""
    cell = torch.tensor(np.stack(list(columns.values()), axis=1), dtype=torch.float32)
    return Trace({f"{layer}.cell": cell}, text=text, tokens=torch.arange(len(text)), cell="lstm", num_layers=1)


def noisy(values: np.ndarray, scale: float, seed: int) -> np.ndarray:
    return values + np.random.default_rng(seed).normal(0, scale, len(values))


def test_a_saturated_unit_ranks_below_one_that_switches():
    quotes = compute_feature("inside_quotes", PROSE).astype(float)
    tr = planted(
        PROSE,
        {
            # Pinned near tanh = -1 on both sides: a perfect AUC, and one solid red band in any picture.
            "pinned": -9.0 + 0.5 * quotes,
            # Switches from -0.76 to +0.76, with noise that costs it some AUC.
            "switching": noisy(2.0 * quotes - 1.0, 0.8, seed=0),
        },
    )
    by_score = find_cells(tr, "inside_quotes", top=None, min_effect=0, controls=())
    assert [row.unit for row in by_score] == [0, 1]  # the rank statistic alone prefers the pinned unit
    assert by_score[0].score == 1.0 and by_score[1].score < 0.99 < by_score[0].score
    ranked = find_cells(tr, "inside_quotes", top=None, controls=())
    assert [row.unit for row in ranked] == [1, 0]
    pinned, switching = ranked[1], ranked[0]
    assert not pinned.visible and abs(pinned.effect) < 0.01
    assert switching.visible and switching.effect > MIN_EFFECT
    # The effect is the difference of the displayed means, computed here independently.
    shown = np.tanh(tr["layers.0.cell"][:, 1].numpy().astype(np.float64))
    assert switching.effect == pytest.approx(shown[quotes == 1].mean() - shown[quotes == 0].mean(), abs=1e-6)
    assert "flat" in repr(ranked) and ranked.to_dict()["rows"][1]["visible"] is False


def test_continuous_effect_is_slope_times_spread_on_the_displayed_scale():
    position = compute_feature("position_in_line", PROSE)
    tr = planted(PROSE, {"pinned": 8.0 + 0.01 * position, "ramp": 0.04 * position - 0.8})
    ranked = find_cells(tr, "position_in_line", top=None, controls=())
    assert [row.unit for row in ranked] == [1, 0]
    assert ranked[0].score < ranked[1].score or ranked[1].score > 0.9  # the pinned unit has the higher |r|
    shown = np.tanh(tr["layers.0.cell"][:, 1].numpy().astype(np.float64))
    slope = np.polyfit(position, shown, 1)[0]
    spread = np.percentile(position, 95) - np.percentile(position, 5)
    assert ranked[0].effect == pytest.approx(slope * spread, rel=1e-6)


def test_gates_are_measured_on_their_displayed_scale():
    quotes = compute_feature("inside_quotes", PROSE)
    gate = torch.tensor(np.where(quotes, 0.9, 0.1), dtype=torch.float32)[:, None]
    effect = visible_effect(gate, quotes, "auc", "forget_gate")
    assert effect[0] == pytest.approx(2 * 0.9 - 1 - (2 * 0.1 - 1), abs=1e-6)  # 2g - 1: 0.8 of a gate is 1.6


def test_a_unit_that_tracks_the_control_does_not_beat_it():
    if_cond = compute_feature("inside_if_condition", CODE).astype(float)
    parens = compute_feature("inside_parens", CODE).astype(float)
    tr = planted(
        CODE,
        {
            "paren": noisy(2.0 * parens - 1.0, 0.3, seed=1),  # on in every parenthesis
            "if": noisy(2.0 * if_cond - 1.0, 0.3, seed=2),  # on in if conditions only
            "pinned_if": -9.0 + 0.5 * if_cond,  # a rank-perfect if unit no picture shows
        },
    )
    table = find_cells(tr, "inside_if_condition", top=None)  # the registered control: inside_parens
    best = table[0]
    assert best.unit == 1 and best.beats_controls
    (control,) = best.controls
    assert control.control == "inside_parens" and control.partial > 0.95 and control.partial_effect > 1.0
    paren = next(row for row in table if row.unit == 0)
    assert not paren.beats_controls
    assert paren.controls[0].score > paren.score  # it tracks parentheses better than if conditions
    pinned = next(row for row in table if row.unit == 2)
    assert pinned.score == 1.0 and not pinned.beats_controls and not pinned.visible
    assert pinned.controls[0].partial_effect < MIN_EFFECT  # a rank difference given the control, not a visible one
    assert "inside_parens" in table.to_markdown() and "given inside_parens" in table.to_markdown()
    assert table.to_dict()["rows"][0]["controls"][0]["control"] == "inside_parens"


def test_partial_score_is_the_stratified_auc():
    quotes = compute_feature("inside_quotes", PROSE)
    dialogue = compute_feature("dialogue_line", PROSE)
    assert not (quotes & ~dialogue).any()  # a quotation implies a dialogue line
    x = noisy(quotes.astype(float), 1.0, seed=3)
    tr = planted(PROSE, {"unit": x})
    (control,) = find_cells(tr, "inside_quotes", min_effect=0)[0].controls
    inside = dialogue
    pos, neg = x[inside & quotes], x[inside & ~quotes]
    want = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert control.partial == pytest.approx(want, abs=1e-9)


def test_control_bad_input():
    tr = planted(CODE, {"unit": noisy(np.zeros(len(CODE)), 1.0, seed=4)})
    with pytest.raises(UnknownFeatureError, match="inside_parens"):  # the message lists the registered features
        find_cells(tr, "inside_if_condition", controls=["inside_paren"])
    with pytest.raises(ValueError, match="is the feature itself"):
        find_cells(tr, "inside_if_condition", controls=["inside_if_condition"])
    with pytest.raises(ValueError, match=r"control 'inside_quotes' .* is constant"):
        find_cells(tr, "inside_if_condition", controls=["inside_quotes"])
    with pytest.raises(ValueError, match="paren_depth' is continuous"):
        find_cells(tr, "inside_if_condition", controls=["paren_depth"])
    same = compute_feature("inside_if_condition", CODE)
    with pytest.raises(ValueError, match="equals feature"):
        find_cells(tr, "inside_if_condition", controls={"copy": same})
    with pytest.raises(ValueError, match="`min_effect` must be a number in \\[0, 2\\]"):
        find_cells(tr, "inside_if_condition", min_effect=3)
    # Registered controls that are constant on the text are skipped and said to be, not an error.
    one_line = '"ab" c "de" f ' * 5  # every character on one line of dialogue: the control is constant
    table = find_cells(planted(one_line, {"unit": np.arange(len(one_line), dtype=float)}), "inside_quotes")
    assert table[0].controls == () and table.skipped == ("control dialogue_line (constant on this text)",)


def test_control_score_rule():
    assert ControlScore("c", score=0.8, partial=0.9, metric="auc", partial_effect=1.0).beaten_by(0.95)
    assert not ControlScore("c", score=0.97, partial=0.9, metric="auc", partial_effect=1.0).beaten_by(0.95)
    assert not ControlScore("c", score=0.8, partial=0.7, metric="auc", partial_effect=1.0).beaten_by(0.95)
    assert not ControlScore("c", score=0.8, partial=0.9, metric="auc", partial_effect=0.2).beaten_by(0.95)


def test_explain_unit_reports_the_effect():
    quotes = compute_feature("inside_quotes", PROSE).astype(float)
    tr = planted(PROSE, {"unit": 3.0 * quotes - 1.5})
    row = explain_unit(tr, 0, 0, features=["inside_quotes"])[0]
    assert row.visible and row.effect == pytest.approx(2 * np.tanh(1.5), abs=1e-6)


def test_analyze_takes_controls(tmp_path):
    vocab = CharVocab(sorted(set(CODE)))
    model = CharLSTM(CharLSTMConfig(vocab_size=len(vocab), hidden_size=8, num_layers=1), vocab=vocab)
    with pytest.raises(UnknownFeatureError, match=r"the known features are \["):
        run_analysis(model, CODE, tmp_path / "a", features=["inside_if_condition"],
                     controls={"inside_if_condition": ["nope"]})
    with pytest.raises(ValueError, match="is constant"):
        run_analysis(model, CODE, tmp_path / "a", features=["inside_if_condition"],
                     controls={"inside_if_condition": ["inside_quotes"]})
    assert not (tmp_path / "a").exists()  # refused before any work
    out = run_analysis(model, CODE, tmp_path / "b", features=["inside_if_condition"])

    rows = json.loads((out / "cells.json").read_text())["features"]["inside_if_condition"]["rows"]
    expected = find_cells(trace(model, CODE), "inside_if_condition", top=10)
    assert [(r["layer"], r["unit"]) for r in rows] == [(r.layer, r.unit) for r in expected]
    assert rows[0]["controls"][0]["control"] == "inside_parens" and "beats_controls" in rows[0]
    out = run_analysis(model, CODE, tmp_path / "c", features=["inside_if_condition"],
                       controls={"inside_if_condition": []})
    rows = json.loads((out / "cells.json").read_text())["features"]["inside_if_condition"]["rows"]
    assert "controls" not in rows[0]
