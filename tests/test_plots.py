"""Every figure renders headless to a PNG, draws what was asked, survives NaN, and rejects bad arguments clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lstm_interp import CharLSTM, Trace, trace
from lstm_interp.analysis import gate_saturation
from lstm_interp.plots import (
    plot_cell_heatmap,
    plot_cell_text,
    plot_gate_saturation,
    plot_saturation_history,
    plot_topk_predictions,
    save_figure,
)
from lstm_interp.plots._common import BAD_COLOR, layout

TEXT = 'He said "hi there"\nand left.\n'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model(make_model) -> CharLSTM:
    return make_model(TEXT, from_text=True)


@pytest.fixture(scope="module")
def tr(model: CharLSTM) -> Trace:
    return trace(model, TEXT)


def hand_trace(cell: list[list[float]], text: str | None) -> Trace:
    """One LSTM layer whose cell state is exactly ``cell`` (T, H)."""
    values = torch.tensor(cell)
    return Trace({"layers.0.cell": values}, text=text, tokens=torch.arange(len(cell)), cell="lstm", num_layers=1)


def assert_png(path, min_bytes: int = 2_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed, not left behind


def drawn_texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# ---------------------------------------------------------------------------------------------------- cell text
def test_cell_text_draws_every_character_and_a_panel_per_unit(tr, tmp_path):
    fig = plot_cell_text(tr, [("layers.1", 3), ("layers.0", 0)], chars_per_line=12)
    assert len(fig.axes) == 3  # two panels and the colorbar
    assert fig.axes[0].get_title(loc="left") == "layers.1 unit 3 (cell)"
    panel = fig.axes[0]
    non_space = [c for c in TEXT if c != " "]
    assert len(panel.texts) == len(non_space)
    assert [t.get_text() for t in panel.texts].count("↵") == 2
    width_px = fig.get_size_inches()[0] * fig.dpi
    assert width_px <= 1600
    save_figure(fig, tmp_path / "cell.png")
    assert_png(tmp_path / "cell.png")


def test_cell_text_colours_minus_and_plus_differently():
    fig = plot_cell_text(hand_trace([[-10.0], [10.0], [0.0]], "ab\n"), [("layers.0", 0)])
    grid = fig.axes[0].images[0].get_array()
    negative, positive, zero = grid[0, 0], grid[0, 1], grid[0, 2]
    assert negative[0] > negative[2]  # red end of RdBu
    assert positive[2] > positive[0]  # blue end
    np.testing.assert_allclose(zero[:3], 0.97, atol=0.03)  # white centre
    assert {t.get_color() for t in fig.axes[0].texts[:2]} == {"white"}  # light ink on the dark extremes


def test_cell_text_wraps_long_lines_and_new_lines():
    positions, rows = layout("abcdef\ngh", chars_per_line=4)
    assert positions[:5] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert positions[6] == (1, 2)  # the newline marker
    assert positions[7] == (2, 0) and rows == 3


def test_cell_text_without_text_and_with_nan(tmp_path):
    fig = plot_cell_text(hand_trace([[0.5], [math.nan], [math.inf], [-0.5]], None), [("layers.0", 0)])
    assert drawn_texts(fig)[:4] == ["·"] * 4
    grid = fig.axes[0].images[0].get_array()
    assert tuple(grid[0, 1]) == BAD_COLOR and tuple(grid[0, 2]) == BAD_COLOR
    assert "2 non-finite values" in fig.axes[0].get_title(loc="left")
    save_figure(fig, tmp_path / "nan.png")
    assert_png(tmp_path / "nan.png", min_bytes=500)


def test_cell_text_gates_use_zero_to_one(tr):
    fig = plot_cell_text(tr, [("layers.0", 1)], quantity="forget_gate", start=3, length=5)
    assert len(fig.axes[0].texts) == len(TEXT[3:8].replace(" ", ""))
    assert fig.axes[-1].get_xlim() == (0.0, 1.0)  # colorbar over the gate's range


def test_cell_text_errors(tr):
    with pytest.raises(ValueError, match="`units` is empty"):
        plot_cell_text(tr, [])
    with pytest.raises(ValueError, match=r"layer 'layers.7' is not in this trace; its layers are \['layers.0'"):
        plot_cell_text(tr, [("layers.7", 0)])
    with pytest.raises(ValueError, match=r"unit 8 is out of range for 'layers\.0', which has 8 units"):
        plot_cell_text(tr, [("layers.0", 8)])
    with pytest.raises(ValueError, match=r"'gate' is not a quantity of a 'lstm' layer; they are \('input_gate'"):
        plot_cell_text(tr, [("layers.0", 0)], quantity="gate")
    with pytest.raises(ValueError, match=r"`start` must be in \[0, 29\)"):
        plot_cell_text(tr, [("layers.0", 0)], start=100)
    with pytest.raises(ValueError, match="`chars_per_line` must be a positive integer, got 0"):
        plot_cell_text(tr, [("layers.0", 0)], chars_per_line=0)


def test_cell_text_filtered_quantity(model):
    cells_only = trace(model, TEXT, names_filter="*.cell")
    with pytest.raises(KeyError, match=r"'layers.0.hidden' is not in this trace.*holds \['layers.0.cell'"):
        plot_cell_text(cells_only, [("layers.0", 0)], quantity="hidden")


def test_cell_text_note_is_the_figure_title_above_the_panels(tmp_path):
    """A note (why these units, why this quantity) is the figure's title, wrapped to its width, above every panel."""
    tr = hand_trace([[-10.0, 0.2], [10.0, -0.3], [0.0, 0.9]] * 20, "ab\n" * 20)
    plain = plot_cell_text(tr, [("layers.0", 0), ("layers.0", 1)], chars_per_line=30)
    note = "layers.0 cells saturated: sd of c = 8.2, tanh(c) flat in 1 of 2 units; showing hidden instead. " * 2
    fig = plot_cell_text(tr, [("layers.0", 0), ("layers.0", 1)], chars_per_line=30, note=note)
    assert plain.get_suptitle() == ""
    title = fig.get_suptitle()
    assert title.replace("\n", " ") == note.strip() and len(title.splitlines()) >= 3  # wrapped to 5 inches
    assert "sd of c = 8.2," in title  # whole clauses per line: a number stays next to what it measures
    lines = len(title.splitlines())
    grown = (fig.get_size_inches()[1] - plain.get_size_inches()[1]) * fig.dpi
    assert grown == pytest.approx(lines * 0.18 * fig.dpi, abs=1)  # room for the note, none taken from panels
    # Rendered: the note ends above the first panel's title.
    fig.canvas.draw()
    note_box = fig._suptitle.get_window_extent()
    panel_title = fig.axes[0].title.get_window_extent()
    assert note_box.y0 > panel_title.y1, (note_box, panel_title)
    save_figure(fig, tmp_path / "note.png")
    assert_png(tmp_path / "note.png")


def test_cell_text_labels_say_why_each_unit_is_shown(tr):
    fig = plot_cell_text(tr, [("layers.1", 3), ("layers.0", 0)], labels=["inside_quotes", None])
    assert [ax.get_title(loc="left") for ax in fig.axes[:2]] == [
        "layers.1 unit 3 (cell) · inside_quotes", "layers.0 unit 0 (cell)"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="`labels` has 1 entries for 2 units; give one per unit"):
        plot_cell_text(tr, [("layers.1", 3), ("layers.0", 0)], labels=["x"])


# ---------------------------------------------------------------------------------------------- top-k guesses
def test_topk_predictions_draws_text_and_k_guesses(tr, model, tmp_path):
    k = 3
    fig = plot_topk_predictions(tr, model.vocab.chars, k=k, chars_per_line=20)
    assert len(fig.axes) == 2  # the grid and its colorbar
    texts = fig.axes[0].texts
    assert len(texts) == len(TEXT.replace(" ", "")) + k * len(TEXT)
    probs = tr["log_probs"][0].exp()
    best = model.vocab.chars[int(probs.argmax())]
    guesses = [t.get_text() for t in texts[1 : 1 + k]]  # the first character's guesses follow it
    assert guesses[0] == {" ": "␣", "\n": "↵"}.get(best, best)
    save_figure(fig, tmp_path / "topk.png")
    assert_png(tmp_path / "topk.png")


def test_topk_predictions_marks_the_actual_next_character():
    chars = "ab"
    log_probs = torch.log(torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]]))
    tr = Trace({"log_probs": log_probs}, text="aba", tokens=torch.tensor([0, 1, 0]), cell="lstm", num_layers=0)
    fig = plot_topk_predictions(tr, chars, k=2)
    texts = fig.axes[0].texts
    # Step 0: text "a", guesses "b" (0.8, bold: "b" follows) then "a".
    assert [t.get_text() for t in texts[:3]] == ["a", "b", "a"]
    assert texts[1].get_fontweight() == "bold" and texts[2].get_fontweight() == "normal"
    grid = fig.axes[0].images[0].get_array()
    assert grid[1, 0, 1] < grid[2, 0, 1]  # 0.8 is darker than 0.2 (a darker green has less of every channel)


def test_topk_predictions_with_nan_rows():
    log_probs = torch.log(torch.tensor([[0.2, 0.8], [math.nan, 0.1]]))
    tr = Trace({"log_probs": log_probs}, text="ab", tokens=torch.tensor([0, 1]), cell="lstm", num_layers=0)
    fig = plot_topk_predictions(tr, "ab", k=2)
    grid = fig.axes[0].images[0].get_array()
    assert tuple(grid[1, 1]) == BAD_COLOR and tuple(grid[2, 1]) == BAD_COLOR
    assert len(fig.axes[0].texts) == 2 + 2  # both text characters, guesses only for the finite step
    assert "grey = 1 step with non-finite log-probabilities" in fig.texts[0].get_text()


def test_topk_predictions_with_a_unit_row_reads_text_unit_guesses():
    # The blog's URL figure: text, then the unit (red -1 .. blue +1), then the guesses, best first.
    chars = "ab"
    log_probs = torch.log(torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]]))
    cells = torch.tensor([[[3.0]], [[-3.0]], [[0.0]]]).reshape(3, 1)  # (T, H): tanh gives +1, -1, 0
    tensors = {"log_probs": log_probs, "layers.0.cell": cells, "layers.0.hidden": cells}
    tr = Trace(tensors, text="aba", tokens=torch.tensor([0, 1, 0]), cell="lstm", num_layers=1)
    fig = plot_topk_predictions(tr, chars, k=2, unit=("layers.0", 0))
    grid = fig.axes[0].images[0].get_array()
    blue, red, white = grid[1, 0], grid[1, 1], grid[1, 2]
    assert blue[2] > 0.3 > blue[0] and red[0] > 0.3 > red[2] and min(white[:3]) > 0.9
    assert [t.get_text() for t in fig.axes[0].texts[:3]] == ["a", "b", "a"]  # the guesses start one row lower
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["text", "unit 0", "#1", "#2"]
    assert "layers.0.cell unit 0" in fig.axes[0].get_title(loc="left")
    assert len(fig.axes) == 3  # the grid, the probability colorbar and the activation colorbar
    with pytest.raises(ValueError, match=r"`unit` 5 is out of range for 'layers.0': units are 0 .. 0"):
        plot_topk_predictions(tr, chars, k=2, unit=("layers.0", 5))
    with pytest.raises(ValueError, match=r"layer 'layers.3' is not in this trace"):
        plot_topk_predictions(tr, chars, k=2, unit=("layers.3", 0))
    with pytest.raises(ValueError, match=r"`unit` must be a \(layer, unit\) pair"):
        plot_topk_predictions(tr, chars, k=2, unit="layers.0:0")


def test_topk_predictions_errors(model, tr):
    no_log_probs = trace(model, TEXT, names_filter="layers.*")
    with pytest.raises(ValueError, match="the trace has no 'log_probs'"):
        plot_topk_predictions(no_log_probs, model.vocab.chars)
    with pytest.raises(ValueError, match=r"`chars` has 2 characters but 'log_probs' has \d+ columns"):
        plot_topk_predictions(tr, "ab")
    with pytest.raises(ValueError, match="`k` must be at most the vocabulary size"):
        plot_topk_predictions(tr, model.vocab.chars, k=1000)
    with pytest.raises(ValueError, match="`length` must be >= 1"):
        plot_topk_predictions(tr, model.vocab.chars, length=0)


# ------------------------------------------------------------------------------------------------ cell heatmap
def test_cell_heatmap_units_by_characters(tr, tmp_path):
    fig = plot_cell_heatmap(tr, "layers.1", units=[5, 2, 7], start=2, length=10)
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (3, 10)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["5", "2", "7"]
    assert "".join(t.get_text() for t in ax.get_xticklabels()) == TEXT[2:12].replace(" ", "␣").replace("\n", "↵")
    save_figure(fig, tmp_path / "heat.png")
    assert_png(tmp_path / "heat.png")


def test_cell_heatmap_all_units_and_nan(tmp_path):
    fig = plot_cell_heatmap(hand_trace([[math.nan, 1.0], [0.0, -math.inf]], "ab"), "layers.0")
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2, 2)
    assert image.mask.tolist() == [[True, False], [False, True]]
    assert "2 non-finite values" in fig.axes[0].get_title(loc="left")
    save_figure(fig, tmp_path / "heat_nan.png")
    assert_png(tmp_path / "heat_nan.png", min_bytes=500)


def test_cell_heatmap_errors(tr, model):
    with pytest.raises(ValueError, match="`units` is empty"):
        plot_cell_heatmap(tr, "layers.0", units=[])
    with pytest.raises(ValueError, match=r"units \[9\] are out of range for 'layers.0', which has 8 units"):
        plot_cell_heatmap(tr, "layers.0", units=[1, 9])
    with pytest.raises(ValueError, match=r"layer 'encoder.0' is not in this trace; its layers are"):
        plot_cell_heatmap(tr, "encoder.0")
    with pytest.raises(KeyError, match=r"'layers\.1\.cell' is not in this trace"):
        plot_cell_heatmap(trace(model, TEXT, names_filter="*.hidden"), "layers.1")


# ------------------------------------------------------------------------------------------- gate saturation
def test_gate_saturation_scatter_per_layer(tr, tmp_path):
    fig = plot_gate_saturation(gate_saturation(tr))
    assert len(fig.axes) == 2
    for ax, layer in zip(fig.axes, ["layers.0", "layers.1"], strict=True):
        assert ax.get_title() == layer
        assert len(ax.collections) == 3  # one scatter per gate
        assert sum(len(c.get_offsets()) for c in ax.collections) == 3 * 8
    save_figure(fig, tmp_path / "sat.png")
    assert_png(tmp_path / "sat.png")


def test_gate_saturation_scatter_skips_units_without_finite_steps():
    forget = torch.tensor([[0.05, math.nan], [0.95, math.nan]])
    tr = Trace({"layers.0.forget_gate": forget}, text="ab", tokens=torch.arange(2), cell="lstm", num_layers=1)
    fig = plot_gate_saturation(gate_saturation(tr))
    (scatter,) = fig.axes[0].collections
    assert len(scatter.get_offsets()) == 1
    assert "1 units without finite steps" in fig.axes[0].get_title()
    assert "2 non-finite values excluded" in fig.get_suptitle()


# ---------------------------------------------------------------------------------------- saturation history
def test_saturation_history_lines(tr, tmp_path):
    sat = gate_saturation(tr)
    history = [(200, sat.summary()), (0, sat), (100, {**sat.summary(), "loss": 1.0})]
    fig = plot_saturation_history(history)
    assert len(fig.axes) == 2
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 * 2  # three gates, left and right
    assert list(lines[0].get_xdata()) == [0, 100, 200]  # sorted by step
    save_figure(fig, tmp_path / "history.png")
    assert_png(tmp_path / "history.png")


def test_saturation_history_with_nan():
    history = [(0, {"layers.0/forget_gate/left_saturated": 0.1}), (1, {"layers.0/forget_gate/left_saturated": np.nan})]
    fig = plot_saturation_history(history)
    assert np.isnan(fig.axes[0].get_lines()[0].get_ydata()[1])


def test_saturation_history_errors():
    with pytest.raises(ValueError, match="`history` is empty"):
        plot_saturation_history([])
    with pytest.raises(ValueError, match=r"no recording holds a saturation fraction.*keys: \['loss'\]"):
        plot_saturation_history([(0, {"loss": 1.0})])
    with pytest.raises(TypeError, match=r"\(step, saturation\) pair"):
        plot_saturation_history([0.5])  # type: ignore[list-item]


# ------------------------------------------------------------------------------------------------------ saving
def test_save_figure_rejects_unknown_format(tr, tmp_path):
    fig = plot_cell_heatmap(tr, "layers.0")
    with pytest.raises(ValueError, match="'xyz' is not one of the formats"):
        save_figure(fig, tmp_path / "fig.xyz")
    assert not list(tmp_path.iterdir())
    path = save_figure(fig, tmp_path / "sub" / "fig.svg")
    assert path.read_text().lstrip().startswith("<?xml")
