"""find_cells and explain_unit find cells built by hand to implement a feature exactly, and only those.

The model is a real 2-layer :class:`CharLSTM` with random weights, traced with :func:`trace`, in which three
layer-0 units are overwritten by hand. The embedding is the identity (``embedding_size = vocab_size``), so a weight
on input column ``k`` fires exactly on character ``k``. With a pre-activation of +-30, ``sigmoid`` and ``tanh`` are 1
(or 0, or -1) to float32 precision (``1 - sigmoid(30) = 9e-14``), so each gate is an exact switch:

- ``COUNTER`` counts the characters since the last newline: forget gate 1 except 0 on ``\\n``, input gate 1 except
  0 on ``\\n``, candidate 1. So ``c_t = c_{t-1} + 1``, and ``c_t = 0`` on a newline: exactly ``position_in_line``.
- ``QUOTE`` toggles between -1 and +1 on every ``"``: forget gate 0 and input gate 1 on ``"`` only (1 and 0
  elsewhere, so ``c`` is held); output gate 1, so the unit reads its own sign back through ``h = tanh(c) = +-0.76``;
  candidate ``tanh(30 - 100 h)`` is -1 when ``c`` was +1 and +1 when it was -1 or 0 (before the first quote). So
  ``c = +1`` inside quotes and ``c <= 0`` outside: ``inside_quotes`` with AUC exactly 1.
- ``PAREN`` is minus the parenthesis depth: forget gate 1, input gate 1 on ``(`` and ``)`` only, candidate -1 on
  ``(`` and +1 on ``)``. The texts never close more than they open, so ``c = -paren_depth``: r = -1.

The counter's and the paren unit's output gates are 0, and every other unit's weights from the three are zeroed, so
the remaining units are random functions of the text that know nothing of the hand-built states: they must score
near chance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstm_interp import CharLSTM, CharLSTMConfig, CharVocab, Trace, trace
from lstm_interp.analysis._scores import score_columns
from lstm_interp.analysis.explain_unit import explain_unit
from lstm_interp.analysis.find_cells import CellScore, CellTable, find_cells
from lstm_interp.features import FEATURES, UnknownFeatureError, inside_quotes, paren_depth

VOCAB = CharVocab('abcde \n"()')
HIDDEN = 16
COUNTER, QUOTE, PAREN = 3, 5, 9
BUILT = {COUNTER, QUOTE, PAREN}
GATE = {"input": 0, "forget": 1, "candidate": 2, "output": 3}  # PyTorch's row blocks: i, f, g, o


def set_unit(layer: torch.nn.LSTM, unit: int, gates: dict[str, tuple[float, dict[str, float]]]) -> None:
    """Give ``unit`` exactly the given (bias, {character: input weight}) per gate, and nothing else."""
    for gate, (bias, weights) in gates.items():
        row = GATE[gate] * HIDDEN + unit
        layer.weight_ih_l0[row] = 0.0
        layer.weight_hh_l0[row] = 0.0
        layer.bias_hh_l0[row] = 0.0
        layer.bias_ih_l0[row] = bias
        for char, weight in weights.items():
            layer.weight_ih_l0[row, VOCAB.char_to_id(char)] = weight


def hand_built_model(seed: int = 0) -> CharLSTM:
    torch.manual_seed(seed)
    config = CharLSTMConfig(vocab_size=len(VOCAB), hidden_size=HIDDEN, embedding_size=len(VOCAB), num_layers=2)
    model = CharLSTM(config, VOCAB).eval()
    layer0, layer1 = model.layers
    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(len(VOCAB)))
        on, off = 30.0, -30.0
        set_unit(layer0, COUNTER, {
            "forget": (on, {"\n": -60.0}), "input": (on, {"\n": -60.0}), "candidate": (on, {}), "output": (off, {}),
        })  # fmt: skip
        set_unit(layer0, QUOTE, {
            "forget": (on, {'"': -60.0}), "input": (off, {'"': 60.0}), "candidate": (on, {}), "output": (on, {}),
        })  # fmt: skip
        layer0.weight_hh_l0[GATE["candidate"] * HIDDEN + QUOTE, QUOTE] = -100.0  # read its own sign back
        set_unit(layer0, PAREN, {
            "forget": (on, {}), "input": (off, {"(": 60.0, ")": 60.0}), "candidate": (0.0, {"(": -30.0, ")": 30.0}),
            "output": (off, {}),
        })  # fmt: skip
        for unit in BUILT:  # nothing else may learn the hand-built states through h
            others = [row for row in range(4 * HIDDEN) if row % HIDDEN not in BUILT]
            layer0.weight_hh_l0[others, unit] = 0.0
            layer1.weight_ih_l0[:, unit] = 0.0
    return model


def random_text(chars: int, seed: int = 0) -> str:
    """Lines of 5-60 characters (no blank lines), with quotes and parentheses that never close below depth 0."""
    rng = np.random.default_rng(seed)
    out, depth = [], 0
    while len(out) < chars:
        for i in range(int(rng.integers(5, 61))):
            r = rng.random()
            if i == 0 or r < 0.6:
                out.append("abcde"[rng.integers(5)])
            elif r < 0.8:
                out.append(" ")
            elif r < 0.87:
                out.append('"')
            elif r < 0.94:
                out.append("(")
                depth += 1
            elif depth > 0:
                out.append(")")
                depth -= 1
        out.append("\n")
    return "".join(out[:chars])


@pytest.fixture(scope="module")
def text() -> str:
    return random_text(3000)


@pytest.fixture(scope="module")
def traced(text) -> Trace:
    return trace(hand_built_model(), text)


# Chance levels on these 3000 characters (seed 0): the random units' AUCs for inside_quotes lie within 0.026 of 0.5
# (standard deviation 0.01). Their r with position_in_line reaches 0.18 (standard deviation 0.08): a unit that reacts
# to the newline character itself correlates with a feature that is 0 exactly there. The bounds leave a margin and
# stay far below the hand-built units' 1.0.
AUC_TOLERANCE, R_TOLERANCE = 0.1, 0.25


def random_rows(table: CellTable) -> list[CellScore]:
    return [row for row in table if not (row.layer == "layers.0" and row.unit in BUILT)]


def test_the_hand_built_cells_compute_their_features_exactly(traced, text):
    cell = traced["layers.0.cell"]
    # 9e-14 of the count survives a newline (the forget gate is sigmoid(-30), not 0): exact to float32 precision.
    np.testing.assert_allclose(cell[:, COUNTER].numpy(), [len(line) for line in _prefix_lines(text)], atol=1e-9)
    np.testing.assert_array_equal(cell[:, PAREN].numpy(), -paren_depth(text))
    assert (cell[:, QUOTE].numpy()[inside_quotes(text)] == 1).all()
    assert (cell[:, QUOTE].numpy()[~inside_quotes(text)] < 1e-9).all()  # -1, or 0 + 9e-14 per step before any quote


def _prefix_lines(text: str) -> list[str]:
    """For every position, the current line up to it (empty on a newline)."""
    return [text[: i + 1].rsplit("\n", 1)[-1] for i in range(len(text))]


def test_newline_counter_ranks_first(traced):
    table = find_cells(traced, "position_in_line", top=None)
    best = table[0]
    assert (best.layer, best.unit, best.metric, best.sign) == ("layers.0", COUNTER, "pearson", 1)
    assert best.score >= 0.99 and best.score == pytest.approx(1.0, abs=1e-6)
    assert len(table) == 2 * HIDDEN
    assert max(row.score for row in random_rows(table)) < R_TOLERANCE


def test_quote_toggle_ranks_first_with_auc_one(traced):
    table = find_cells(traced, "inside_quotes", top=None)
    best = table[0]
    assert (best.layer, best.unit, best.metric, best.sign, best.score, best.value) == (
        "layers.0", QUOTE, "auc", 1, 1.0, 1.0,
    )  # fmt: skip
    assert max(abs(row.value - 0.5) for row in random_rows(table)) < AUC_TOLERANCE


def test_paren_cell_ranks_first_with_negative_sign(traced, text):
    best = find_cells(traced, "paren_depth")[0]
    assert (best.unit, best.sign, best.value) == (PAREN, -1, pytest.approx(-1.0, abs=1e-6))
    # The opposite feature, precomputed: same unit, same score, opposite sign.
    flipped = find_cells(traced, ~inside_quotes(text), top=1)[0]
    assert (flipped.unit, flipped.score, flipped.sign, flipped.value, flipped.feature) == (
        QUOTE,
        1.0,
        -1,
        0.0,
        "<array>",
    )


def test_callable_and_kind_override(traced, text):
    parity = find_cells(traced, lambda t: np.cumsum([c == '"' for c in t]) % 2, kind="binary", top=1)[0]
    assert (parity.unit, parity.metric, parity.feature, parity.score) == (QUOTE, "auc", "<lambda>", 1.0)
    as_numbers = find_cells(traced, "inside_quotes", kind="continuous", top=1)[0]
    assert (as_numbers.unit, as_numbers.metric) == (QUOTE, "pearson") and as_numbers.score > 0.9


def test_layers_and_top(traced):
    only_top = find_cells(traced, "position_in_line", layers="layers.1", top=3)
    assert len(only_top) == 3 and {row.layer for row in only_top} == {"layers.1"}
    assert find_cells(traced, "position_in_line", layers=[0], top=1)[0].unit == COUNTER
    assert (
        find_cells(traced, "position_in_line", layers=-1, top=None).rows
        == find_cells(traced, "position_in_line", layers=["layers.1"], top=None).rows
    )
    with pytest.raises(
        ValueError, match=r"unknown layer 'layers.7'; the trace's layers are \['layers.0', 'layers.1'\]"
    ):
        find_cells(traced, "position_in_line", layers="layers.7")
    with pytest.raises(ValueError, match="`top` must be a positive integer or None, got 0"):
        find_cells(traced, "position_in_line", top=0)


def test_other_quantities_are_scored(traced):
    best = find_cells(traced, "inside_quotes", quantity="hidden", top=1)[0]
    assert (best.unit, best.score) == (QUOTE, 1.0)  # h = tanh(c) keeps the order
    with pytest.raises(KeyError, match="not in this trace"):
        find_cells(traced, "inside_quotes", quantity="reset_gate")


def test_float16_traces_give_the_same_ranking(text):
    half = trace(hand_built_model(), text, dtype=torch.float16)
    full = trace(hand_built_model(), text)
    for feature in ("inside_quotes", "position_in_line", "paren_depth", "start_of_word"):
        got, want = find_cells(half, feature, top=None), find_cells(full, feature, top=None)
        assert [(r.layer, r.unit) for r in got[:1]] == [(r.layer, r.unit) for r in want[:1]]
        got_scores = {(r.layer, r.unit): r.score for r in got}
        for row in want:  # rounding to float16 moves scores only slightly
            assert got_scores[row.layer, row.unit] == pytest.approx(row.score, abs=0.02)


def test_explain_unit_names_each_cells_feature(traced):
    counter = explain_unit(traced, "layers.0", COUNTER)
    assert counter[0].feature == "position_in_line" and counter[0].score == pytest.approx(1.0, abs=1e-6)
    quote = explain_unit(traced, 0, QUOTE, top=None)
    assert (quote[0].feature, quote[0].score, quote[0].strength) == ("inside_quotes", 1.0, 1.0)
    assert explain_unit(traced, 0, PAREN, features=["paren_depth", "inside_quotes"])[0].feature == "paren_depth"
    # The text has no URL, comment or brace: those features are constant, so they are reported, not scored.
    assert {"inside_url", "inside_comment", "brace_depth"} <= set(quote.skipped)
    assert len(quote) + len(quote.skipped) == len(FEATURES)
    strengths = [row.strength for row in quote]
    assert strengths == sorted(strengths, reverse=True)
    labelled = explain_unit(traced, 0, QUOTE, features={"quotes": inside_quotes, "odd": np.arange(3000) % 2 == 1})
    assert [row.feature for row in labelled] == ["quotes", "odd"]


def test_explain_unit_errors(traced):
    with pytest.raises(ValueError, match=r"`unit` must be an integer in \[0, 16\) .* got 16"):
        explain_unit(traced, 0, HIDDEN)
    with pytest.raises(ValueError, match="unknown layer 5"):
        explain_unit(traced, 5, 0)
    with pytest.raises(ValueError, match="no features to score"):
        explain_unit(traced, 0, 0, features=[])
    with pytest.raises(UnknownFeatureError, match="the known features are"):
        explain_unit(traced, 0, 0, features=["nope"])


# ---------------------------------------------------------------------------- errors and edge cases
def test_unknown_feature_lists_the_known_ones(traced):
    with pytest.raises(KeyError, match=r"unknown feature 'quotes'.*the known features are \[.*'inside_quotes'"):
        find_cells(traced, "quotes")


def test_length_mismatch_names_both_lengths(traced):
    with pytest.raises(ValueError, match="feature '<array>' has 2999 values but the trace has 3000 characters"):
        find_cells(traced, np.zeros(2999))


def test_constant_feature_is_an_error_not_nan(traced):
    with pytest.raises(ValueError, match=r"feature '<array>' is constant \(1.0\) over all 3000 characters"):
        find_cells(traced, np.ones(3000))
    with pytest.raises(ValueError, match=r"'inside_url' is constant .* undefined"):
        find_cells(traced, "inside_url")


def test_bad_feature_values(traced):
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        find_cells(traced, np.arange(3000) % 3, kind="binary")
    with pytest.raises(ValueError, match="1 non-finite"):
        find_cells(traced, np.r_[np.nan, np.arange(2999.0)])
    with pytest.raises(ValueError, match="`kind` must be one of"):
        find_cells(traced, "inside_quotes", kind="ordinal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be 1-D"):
        find_cells(traced, np.zeros((3000, 2)))


def hand_trace(columns: np.ndarray, *, text: str | None = None, dtype: torch.dtype = torch.float32) -> Trace:
    values = torch.tensor(columns, dtype=dtype)
    steps = values.shape[0]
    return Trace({"layers.0.cell": values}, text=text, tokens=torch.arange(steps), cell="lstm", num_layers=1)


def test_constant_units_score_as_no_association():
    """A constant unit has AUC 0.5 (every pair tied) and r defined as 0, both with sign 0; it ranks last."""
    rng = np.random.default_rng(0)
    columns = np.stack([np.full(200, 0.3), rng.normal(size=200), np.zeros(200)], axis=1)
    labels = rng.random(200) < 0.3
    for dtype in (torch.float32, torch.float16):
        by_unit = {r.unit: r for r in find_cells(hand_trace(columns, dtype=dtype), labels, top=None)}
        assert [(by_unit[u].value, by_unit[u].sign, by_unit[u].score) for u in (0, 2)] == [(0.5, 0, 0.5)] * 2
        by_unit = {r.unit: r for r in find_cells(hand_trace(columns, dtype=dtype), rng.normal(size=200), top=None)}
        assert [(by_unit[u].value, by_unit[u].sign, by_unit[u].score) for u in (0, 2)] == [(0.0, 0, 0.0)] * 2


def test_trace_without_text_needs_precomputed_features():
    tr = hand_trace(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(ValueError, match=r"holds no text .* pass 'inside_quotes' precomputed"):
        find_cells(tr, "inside_quotes")
    assert len(find_cells(tr, np.arange(10) % 2 == 0)) == 2


def test_non_finite_activations_are_named():
    columns = np.random.default_rng(0).normal(size=(20, 3))
    columns[4, 2] = np.nan
    for feature in (np.arange(20) % 2 == 0, np.arange(20.0)):
        with pytest.raises(ValueError, match=r"layers.0.cell has NaN or infinite values in units \[2\]"):
            find_cells(hand_trace(columns), feature)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_scores_match_the_definitions(dtype):
    """AUC against counting all pairs (ties 1/2), r against numpy, on data with many ties and signed zeros."""
    rng = np.random.default_rng(1)
    for trial in range(15):
        steps, units = int(rng.integers(2, 200)), int(rng.integers(1, 70))
        columns = rng.normal(size=(steps, units))
        if trial % 3 == 0:
            columns = np.round(columns * 2) / 2  # many exact ties, -0.0 among them
        columns[: steps // 3, 0] = -0.0 if trial % 2 else 0.0
        labels = rng.random(steps) < rng.uniform(0.05, 0.95)
        if labels.all() or not labels.any():
            continue
        x = torch.tensor(columns).to(dtype)
        exact = x.double().numpy()
        positive, negative = exact[labels][:, None, :], exact[~labels][None, :, :]
        want = ((positive > negative).sum((0, 1)) + 0.5 * (positive == negative).sum((0, 1))) / (
            labels.sum() * (~labels).sum()
        )
        np.testing.assert_allclose(score_columns(x, labels, "auc", "x"), want, atol=1e-12)
        target = rng.normal(size=steps)
        want_r = [np.corrcoef(col, target)[0, 1] if col.min() < col.max() else 0.0 for col in exact.T]
        np.testing.assert_allclose(score_columns(x, target, "pearson", "x"), want_r, atol=1e-6)


def test_table_renders(traced):
    table = find_cells(traced, "inside_quotes", top=2, controls=())
    assert isinstance(table, CellTable) and len(table) == 2 and next(iter(table)) is table[0]
    data = table.to_dict()
    assert data["quantity"] == "cell" and data["num_steps"] == 3000 and len(data["rows"]) == 2
    row = data["rows"][0]
    effect = row.pop("effect")
    assert row == {
        "layer": "layers.0", "unit": QUOTE, "feature": "inside_quotes", "metric": "auc", "score": 1.0, "sign": 1,
        "value": 1.0, "quantity": "cell", "visible": True,
    }  # fmt: skip
    assert effect == pytest.approx(table[0].effect) and effect > 0.5
    markdown = table.to_markdown()
    assert "| # | layer | unit | feature | metric | score | sign | effect |" in markdown
    assert f"| 1 | layers.0 | {QUOTE} | inside_quotes | auc | 1.0000 | + | {effect:+.2f} |" in markdown
    assert "strength" not in markdown  # one metric: no need for a common scale
    text = repr(table)
    assert text.startswith("CellTable(units of layers.0, layers.1 whose cell tracks 'inside_quotes' (auc)")
    assert "inside_quotes" in text.splitlines()[2]
    mixed = explain_unit(traced, 0, QUOTE, features=["inside_quotes", "position_in_line"])
    assert "strength" in mixed.to_markdown() and "strength" in repr(mixed)
