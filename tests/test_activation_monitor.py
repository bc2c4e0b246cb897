"""LSTMActivationMonitor with a real Trainer: files, scalars and figures in TensorBoard, foreign modules, resuming,
two monitors, DDP, and every validation error."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from browser import artifacts_dir
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lstm_interp.callbacks import LSTMActivationMonitor
from lstm_interp.callbacks._recording_writer import CELL_TEXT_STEPS, Group, draw_figures
from matplotlib.figure import Figure
from pictures import PINNED_VOCAB, QUOTE, SAT, SWITCH, assert_picture, pinned_model, pinned_text
from safetensors import safe_open
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from lstm_interp import Trace, VocabularyError, find_cells, trace
from lstm_interp.data import CharDataModule
from lstm_interp.features import FEATURES, busiest_window, compute_feature, get_feature, regex_spans, register_feature
from lstm_interp.manifest import text_provenance
from lstm_interp.models.char_lstm_module import CharLSTMModule
from lstm_interp.plots import save_figure
from lstm_interp.report.html_report import ranked_feature_matches
from lstm_interp.report.saturation import flat_mask

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 20
VOCAB = "".join(sorted(set(TEXT)))  # CharVocab.from_text's order
PROBE = "the dog sat on the mat.\n"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def datamodule(tmp_path: Path) -> CharDataModule:
    return CharDataModule(text=TEXT, vocab=VOCAB, batch_size=4, seq_len=16, cache_dir=str(tmp_path / "cache"))


def char_module(**kwargs: Any) -> CharLSTMModule:
    torch.manual_seed(0)
    return CharLSTMModule(vocab=VOCAB, hidden_size=8, embedding_size=4, lr_schedule="constant", **kwargs)


def fit(tmp_path: Path, module: pl.LightningModule, callbacks: list, **kwargs: Any) -> pl.Trainer:
    ckpt_path = kwargs.pop("ckpt_path", None)
    kwargs = {
        "default_root_dir": tmp_path,
        "max_steps": 4,
        "limit_train_batches": 4,
        "limit_val_batches": 0,
        "logger": TensorBoardLogger(tmp_path, name="tb"),
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": callbacks,
        **kwargs,
    }
    trainer = pl.Trainer(**kwargs)
    trainer.fit(module, datamodule=datamodule(tmp_path), ckpt_path=ckpt_path)
    return trainer


def index(folder: Path) -> dict:
    return json.loads((folder / "index.json").read_text())


def events(logger: TensorBoardLogger) -> EventAccumulator:
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


class TinyLM(pl.LightningModule):
    """Embedding -> 2-layer nn.LSTM at ``encoder.lstm`` -> linear: a module lstm_interp did not build."""

    def __init__(self, batch_first: bool = True, bidirectional: bool = False, cell: type = nn.LSTM) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.batch_first = batch_first
        self.embed = nn.Embedding(len(VOCAB), 4)
        rnn = cell(4, 8, num_layers=2, batch_first=batch_first, bidirectional=bidirectional)
        self.encoder = nn.ModuleDict({"lstm": rnn})
        self.head = nn.Linear(16 if bidirectional else 8, len(VOCAB))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)  # (B, T, E)
        x = x if self.batch_first else x.transpose(0, 1)
        out, _ = self.encoder["lstm"](x)
        out = out if self.batch_first else out.transpose(0, 1)
        return self.head(out)  # (B, T, V)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x).reshape(-1, len(VOCAB)), y.reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ModeSpy(pl.Callback):
    """Runs after the monitor: notes the modes and hooks it left behind."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, bool, int]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.embed.eval()  # a submodule kept in eval mode on purpose (as a frozen BatchNorm would be)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        lstm = pl_module.encoder["lstm"]
        self.seen.append((lstm.training, pl_module.embed.training, len(lstm._forward_pre_hooks)))


class ImagelessLogger(Logger):
    """A logger with scalars but no way to take figures."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "imageless"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass



class ImageLogger(ImagelessLogger):
    """A logger with ``log_image``, as W&B's and Neptune's have."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, int | None, tuple[int, ...], np.dtype]] = []

    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        self.images += [(key, step, image.shape, image.dtype) for image in images]


# ---------------------------------------------------------------------------------------------- CharLSTMModule
def test_char_module_records_files_scalars_and_figures(tmp_path):
    module = char_module()
    monitor = LSTMActivationMonitor([PROBE, "the cat sat.\n"], every_n_train_steps=2)
    trainer = fit(tmp_path, module, [monitor])
    folder = Path(trainer.logger.log_dir) / "lstm_interp"

    doc = index(folder)
    assert [r["step"] for r in doc["recordings"]] == [2, 4]  # the end of fit (step 4) is not recorded twice
    assert doc["probe_texts"] == [PROBE, "the cat sat.\n"]
    last = doc["recordings"][-1]
    assert last["files"]["activations"] == "step_4.safetensors"
    assert set(last["files"]["figures"]) == {
        "cell_text", "gate_saturation", "topk_predictions", "cell_heatmap", "saturation_history"
    }
    assert all((folder / name).is_file() for name in last["files"]["figures"].values())
    assert (folder / "step_4.html").is_file() and last["files"]["html"] == "step_4.html"
    assert 0 <= last["summary"]["layers.1/forget_gate/right_saturated"] <= 1
    assert not list(folder.glob("*.tmp"))  # atomic writes leave nothing behind

    tensors = load_file(folder / "step_4.safetensors")
    assert tensors["probe0/layers.0.cell"].dtype == torch.float16
    assert tensors["probe1/layers.1.forget_gate"].shape == (len("the cat sat.\n"), 8)
    expected = trace(module.network, PROBE)  # the model at step 4 is the final one
    torch.testing.assert_close(tensors["probe0/layers.1.cell"].float(), expected["layers.1.cell"], atol=2e-3, rtol=0)
    torch.testing.assert_close(tensors["probe0/log_probs"].float(), expected["log_probs"], atol=1e-2, rtol=0)
    with safe_open(folder / "step_4.safetensors", "pt") as f:
        assert json.loads(f.metadata()["probe_texts"]) == [PROBE, "the cat sat.\n"]

    acc = events(trainer.logger)
    scalars = acc.Tags()["scalars"]
    assert "lstm_interp/layers.0/input_gate/left_saturated" in scalars and "lstm_interp/layers.1/cell/std" in scalars
    assert [e.step for e in acc.Scalars("lstm_interp/layers.1/forget_gate/right_saturated")] == [2, 4]
    images = acc.Tags()["images"]
    assert {"lstm_interp/cell_text", "lstm_interp/topk_predictions", "lstm_interp/saturation_history"} <= set(images)
    assert [e.step for e in acc.Images("lstm_interp/cell_heatmap")] == [2, 4]


def test_feature_matches_in_index_scalars_report_and_cell_text(tmp_path):
    probe = PROBE + "the cat sat on the log.\n"
    module = char_module()
    monitor = LSTMActivationMonitor(probe, every_n_train_steps=2, features=["start_of_word", "position_in_line"],
                                    feature_top=2, log_figures=False)
    trainer = fit(tmp_path, module, [monitor])
    folder = Path(trainer.logger.log_dir) / "lstm_interp"
    last = index(folder)["recordings"][-1]
    assert set(last["features"]) == {"start_of_word", "position_in_line"}
    # The monitor's matches are find_cells on the model it traced: at step 4 that is the final one.
    expected = find_cells(trace(module.network, probe), "start_of_word", top=2)
    got = last["features"]["start_of_word"]
    assert [(r["layer"], r["unit"]) for r in got] == [(r.layer, r.unit) for r in expected.rows]
    assert got[0]["score"] == pytest.approx(expected.rows[0].score, abs=1e-6) and got[0]["metric"] == "auc"
    assert got[0]["effect"] == pytest.approx(expected.rows[0].effect, abs=1e-6)  # to_dict's row, whole
    assert [r["visible"] for r in got] == [r.visible for r in expected.rows]
    assert last["features"]["position_in_line"][0]["metric"] == "pearson"

    scores = events(trainer.logger).Scalars("lstm_interp/features/start_of_word/best_score")
    assert [e.step for e in scores] == [2, 4] and scores[-1].value == pytest.approx(got[0]["score"], abs=1e-6)
    page = (folder / "step_4.html").read_text()
    meta = re.search(r'<script type="application/json" id="report-meta">(.*?)</script>', page, re.S)
    meta = json.loads(meta.group(1))
    assert [f["name"] for f in meta["features"]] == ["start_of_word", "position_in_line"]
    assert meta["features"][0]["matches"][0]["unit"] == got[0]["unit"]


def test_feature_matches_are_scored_against_the_registered_controls(tmp_path):
    # The tiny vocabulary has no quotes or parentheses: a feature of its own, with a registered control.
    register_feature("dog_word", lambda text: regex_spans(text, "dog"), kind="binary", controls=("inside_word",))
    register_feature("inside_word", lambda text: regex_spans(text, "[a-z]+"), kind="binary")
    try:
        module = char_module()
        monitor = LSTMActivationMonitor(PROBE * 3, every_n_train_steps=2, features=["dog_word"], feature_top=3,
                                        log_figures=False)
        trainer = fit(tmp_path, module, [monitor])
        expected = find_cells(trace(module.network, PROBE * 3), "dog_word", top=3)
    finally:
        FEATURES.pop("dog_word"), FEATURES.pop("inside_word")
    got = index(Path(trainer.logger.log_dir) / "lstm_interp")["recordings"][-1]["features"]["dog_word"]
    assert [(r["layer"], r["unit"]) for r in got] == [(r.layer, r.unit) for r in expected.rows]
    assert got[0]["controls"][0]["control"] == "inside_word"
    assert got[0]["controls"][0]["partial"] == pytest.approx(expected.rows[0].controls[0].partial, abs=1e-6)
    assert got[0]["beats_controls"] == expected.rows[0].beats_controls


def test_cell_text_figure_opens_with_the_feature_units():
    tr = trace(char_module().network, PROBE)
    group = Group("", tr, tr, None)
    rows = [{"layer": "layers.0", "unit": 5}]  # no `visible` flag (an older index): counts as visible
    kinds = dict(draw_figures([group], [], chars=None, cells_to_plot=3, top_k=2, feature_rows=rows))
    fig = kinds["cell_text"]()
    titles = [t for t in (ax.get_title(loc="left") or ax.get_title() for ax in fig.axes) if t]
    assert len(titles) == 3 and titles[0].startswith("layers.0 unit 5")
    assert all(t.startswith("layers.1") for t in titles[1:])  # then the most variable last-layer units


def test_topk_figure_shows_the_chosen_feature_unit_under_the_text(tmp_path):
    # The blog's URL-cell figure (issue 23): when the cell text follows a feature's unit, the top-k figure draws
    # that unit's activation between the text and the guesses, over the same window.
    tr = trace(pinned_model(switching=True), PINNED_PROBE)
    rows = pinned_matches(tr, ["inside_quotes"])
    quotes = compute_feature(get_feature("inside_quotes"), PINNED_PROBE)
    chars = pinned_model(switching=True).vocab.chars
    kinds = dict(draw_figures([Group("", tr, tr, None)], [], chars=chars, cells_to_plot=2, top_k=3, feature_rows=rows,
                              feature_track=("inside_quotes", quotes)))  # fmt: skip
    fig = kinds["topk_predictions"]()
    assert fig.axes[0].get_title(loc="left").startswith(f"layers.0.cell unit {QUOTE} after each character")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:5] == ["text", f"unit {QUOTE}", "#1", "#2", "#3"]
    unit_row = fig.axes[0].images[0].get_array()[1, :, :3]  # (columns, RGB)
    assert (unit_row[:, 0] > unit_row[:, 2] + 0.3).any() and (unit_row[:, 2] > unit_row[:, 0] + 0.3).any()
    assert_picture(save_figure(fig, artifacts_dir(tmp_path) / "topk_with_unit.png"))
    plain = dict(draw_figures([Group("", tr, tr, None)], [], chars=chars, cells_to_plot=2, top_k=3))
    assert [t.get_text() for t in plain["topk_predictions"]().axes[0].get_yticklabels()][:2] == ["text", "#1"]


# ------------------------------------------------------------------------------ flat bands (issue 20, part 5)
PINNED_PROBE = pinned_text(600)


def pinned_matches(tr: Trace, features: list[str]) -> list[dict[str, Any]]:
    """Each feature's first row, best first: what the monitor hands the figures."""
    return ranked_feature_matches({f: [r.to_dict() for r in find_cells(tr, f, top=3)] for f in features})


def panel_titles(fig: Figure) -> list[str]:
    return [t for t in (ax.get_title(loc="left") for ax in fig.axes) if t]


def test_cell_text_figure_keeps_the_units_that_switch_and_drops_the_flat_one(tmp_path):
    tr = trace(pinned_model(switching=True), PINNED_PROBE)
    rows = pinned_matches(tr, ["inside_quotes", "position_in_line"])
    assert [(r["feature"], r["unit"], r["visible"]) for r in rows] == [
        ("inside_quotes", QUOTE, True), ("position_in_line", SWITCH, True)
    ]  # fmt: skip
    quotes = compute_feature(get_feature("inside_quotes"), PINNED_PROBE)
    window = busiest_window(quotes, CELL_TEXT_STEPS)
    # The quote cell is at -0.76 on 93% of the window: flat by most_variable_units's rule, which the figure used to
    # drop it by; yet it switches, and is the picture of the feature.
    assert quotes[window].mean() < 0.1 and bool(flat_mask(tr, "layers.0", "cell", window)[QUOTE])
    group = Group("", tr, tr, None)
    kinds = dict(draw_figures([group], [], chars=None, cells_to_plot=3, top_k=2, feature_rows=rows,
                              feature_track=("inside_quotes", quotes)))  # fmt: skip
    fig = kinds["cell_text"]()
    titles = panel_titles(fig)
    assert titles[0] == f"layers.0 unit {QUOTE} (cell) · inside_quotes  ▁ track: inside_quotes"
    assert titles[1].startswith(f"layers.0 unit {SWITCH} (cell) · position_in_line")  # each panel says why
    assert not [t for t in titles if t.startswith(f"layers.0 unit {SAT} ")]  # r = 1, but a flat band
    assert fig.get_suptitle() == ""
    grid = fig.axes[0].images[0].get_array()
    assert (grid[..., 0] > grid[..., 2] + 0.3).any() and (grid[..., 2] > grid[..., 0] + 0.3).any()  # red and blue
    assert_picture(save_figure(fig, artifacts_dir(tmp_path) / "cell_text_switching.png"))


def test_cell_text_figure_of_pinned_cells_says_so_with_the_sd_and_shows_what_varies(tmp_path):
    tr = trace(pinned_model(switching=False), PINNED_PROBE)
    rows = pinned_matches(tr, ["position_in_line"])
    assert (rows[0]["unit"], rows[0]["visible"]) == (SAT, False)
    values = compute_feature(get_feature("position_in_line"), PINNED_PROBE)
    group = Group("", tr, tr, None)
    kinds = dict(draw_figures([group], [], chars=None, cells_to_plot=3, top_k=2, feature_rows=rows,
                              feature_track=("position_in_line", values)))  # fmt: skip
    fig = kinds["cell_text"]()
    window = busiest_window(values, CELL_TEXT_STEPS)
    sd = [f"{tr[f'layers.{i}.cell'][window].double().std(correction=0).item():,.0f}" for i in (0, 1)]
    note = fig.get_suptitle().replace("\n", " ")
    assert note.startswith(
        f"layers.0 cells saturated: sd of c = {sd[0]}, tanh(c) pinned near ±1 in 8 of 8 units; "
        f"layers.1 cells saturated: sd of c = {sd[1]}, tanh(c) pinned near ±1 in 8 of 8 units; "
        "showing output_gate instead. "
        f"The best unit for position_in_line, layers.0 unit {SAT} (r 1.00, effect +0.15), does not visibly switch"
    ), note
    titles = panel_titles(fig)
    assert len(titles) == 3 and all("(output_gate)" in t for t in titles)
    assert titles[0] == f"layers.0 unit {SAT} (output_gate) · position_in_line  ▁ track: position_in_line"
    assert all(" · most variable " in t for t in titles[1:])
    assert fig.axes[-1].get_xlabel().startswith("output_gate")  # the colour bar says what is coloured
    for ax in fig.axes[:3]:  # every panel varies: no blank band
        colours = ax.images[0].get_array()[..., :3].reshape(-1, 3)
        assert len(np.unique(colours.round(2), axis=0)) > 5
    assert_picture(save_figure(fig, artifacts_dir(tmp_path) / "cell_text_pinned.png"))


def test_cell_text_figure_without_a_visible_feature_unit_says_so_and_draws_no_track():
    tr = trace(char_module().network, PROBE)
    values = compute_feature(get_feature("position_in_line"), PROBE)
    row = {"layer": "layers.0", "unit": 5, "feature": "position_in_line", "metric": "pearson", "score": 0.61,
           "effect": -0.001, "visible": False}  # fmt: skip
    kinds = dict(draw_figures([Group("", tr, tr, None)], [], chars=None, cells_to_plot=2, top_k=2, feature_rows=[row],
                              feature_track=("position_in_line", values)))  # fmt: skip
    fig = kinds["cell_text"]()
    assert fig.get_suptitle().replace("\n", " ") == (
        "no unit visibly follows position_in_line: the best unit for position_in_line, layers.0 unit 5 "
        "(r 0.61, effect +0.00), barely changes colour with it"
    )
    titles = panel_titles(fig)
    assert len(titles) == 2 and all(t.startswith("layers.1 unit ") and t.endswith(" · most variable") for t in titles)


def pinned_fit(tmp_path: Path, switching: bool) -> tuple[Path, pl.Trainer, CharLSTMModule]:
    """Two steps of a real fit that leaves the hand-set weights as they are (a learning rate of 1e-12)."""
    module = CharLSTMModule.from_network(pinned_model(switching=switching), lr=1e-12, lr_schedule="constant")
    data = CharDataModule(text=pinned_text(1200, seed=3), vocab=PINNED_VOCAB, batch_size=4, seq_len=16,
                          cache_dir=str(tmp_path / "cache"))  # fmt: skip
    monitor = LSTMActivationMonitor(PINNED_PROBE, every_n_train_steps=2, features=["position_in_line"], feature_top=3)
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_steps=2, limit_train_batches=2, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[monitor],
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return Path(trainer.logger.log_dir) / "lstm_interp", trainer, module


def test_monitor_opens_on_the_unit_that_switches_and_logs_the_first_rows_score(tmp_path):
    folder, trainer, _ = pinned_fit(tmp_path, switching=True)
    last = index(folder)["recordings"][-1]
    rows = last["features"]["position_in_line"]
    assert [(r["unit"], r["visible"]) for r in rows[:2]] == [(SWITCH, True), (SAT, False)]
    assert rows[0]["effect"] > 0.5 > rows[1]["effect"] and rows[1]["score"] > rows[0]["score"]
    # best_score is the first row's, by find_cells's rule: the switching unit's r, not the flat unit's higher one.
    [score] = events(trainer.logger).Scalars("lstm_interp/features/position_in_line/best_score")
    assert score.value == pytest.approx(rows[0]["score"], abs=1e-6) and score.value < rows[1]["score"]
    meta = json.loads(re.search(r'id="report-meta">(.*?)</script>', (folder / "step_2.html").read_text()).group(1))
    assert (meta["open"]["layer"], meta["open"]["unit"], meta["open"]["quantity"]) == ("layers.0", SWITCH, "cell")
    assert "note" not in meta
    assert_picture(folder / last["files"]["figures"]["cell_text"], min_width=400, min_height=150)


def test_monitor_on_pinned_cells_says_so_in_the_report(tmp_path):
    folder, _, module = pinned_fit(tmp_path, switching=False)
    last = index(folder)["recordings"][-1]
    first = last["features"]["position_in_line"][0]
    assert (first["unit"], first["visible"]) == (SAT, False) and first["effect"] < 0.5
    meta = json.loads(re.search(r'id="report-meta">(.*?)</script>', (folder / "step_2.html").read_text()).group(1))
    tr = trace(module.network, PINNED_PROBE)
    sd = f"{tr['layers.0.cell'].double().std(correction=0).item():,.0f}"
    assert meta["note"].startswith(f"layers.0 cells saturated: sd of c = {sd}, tanh(c) pinned near ±1 in 8 of 8 units")
    assert (meta["open"]["unit"], meta["open"]["quantity"]) == (SAT, "output_gate")
    assert_picture(folder / last["files"]["figures"]["cell_text"], min_width=400, min_height=150)


def test_feature_that_is_constant_on_the_probe_is_refused_at_fit_start(tmp_path):
    monitor = LSTMActivationMonitor(PROBE, features=["inside_quotes"])  # PROBE has no quote
    message = r"feature 'inside_quotes' is constant \(False\) over all \d+ characters of the probe texts"
    with pytest.raises(ValueError, match=message):
        fit(tmp_path, char_module(), [monitor])


def test_epochs_schedule_and_no_logger_folder(tmp_path):
    monitor = LSTMActivationMonitor(PROBE, every_n_train_steps=None, every_n_epochs=1, quantities=["cell"],
                                    dtype=torch.float32, log_figures=False, html=False)
    module = CharLSTMModule(hidden_size=8, embedding_size=4)  # built in configure_model, from the data's vocabulary
    fit(tmp_path, module, [monitor], logger=False, max_steps=-1, max_epochs=2, limit_train_batches=3)
    folder = tmp_path / "lstm_interp"  # default_root_dir without a logger
    assert [r["step"] for r in index(folder)["recordings"]] == [3, 6]
    tensors = load_file(folder / "step_6.safetensors")
    assert set(tensors) == {"probe0/layers.0.cell", "probe0/layers.1.cell", "probe0/log_probs", "probe0/tokens"}
    assert tensors["probe0/layers.0.cell"].dtype == torch.float32


# ---------------------------------------------------------------------------------------------- foreign modules
@pytest.mark.parametrize("batch_first", [True, False])
def test_foreign_lstm_is_traced_exactly_and_left_as_it_was(tmp_path, batch_first):
    module, spy = TinyLM(batch_first=batch_first), ModeSpy()
    encode = None if batch_first else (lambda text: torch.tensor([VOCAB.index(c) for c in text]))
    monitor = LSTMActivationMonitor(PROBE, modules="encoder.lstm", chars=VOCAB, encode=encode, every_n_train_steps=2,
                                    log_figures=batch_first, html=False)
    trainer = fit(tmp_path, module, [monitor, spy])
    assert spy.seen and all(seen == (True, False, 0) for seen in spy.seen)  # train mode back, eval kept, no hooks

    folder = Path(trainer.logger.log_dir) / "lstm_interp"
    tensors = load_file(folder / "step_4.safetensors")
    ids = torch.tensor([VOCAB.index(c) for c in PROBE])
    module.eval()
    with torch.no_grad():
        x = module.embed(ids)[None] if batch_first else module.embed(ids)[:, None]
        out, (_, c_n) = module.encoder["lstm"](x)
        logits = module(ids[None])[0]
    out = out[0] if batch_first else out[:, 0]
    torch.testing.assert_close(tensors["probe0/encoder.lstm.1.hidden"].float(), out, atol=2e-3, rtol=0)
    torch.testing.assert_close(tensors["probe0/encoder.lstm.0.cell"][-1].float(), c_n[0, 0], atol=2e-3, rtol=0)
    torch.testing.assert_close(tensors["probe0/log_probs"].float(), logits.log_softmax(-1), atol=1e-2, rtol=0)
    if batch_first:
        figures = index(folder)["recordings"][-1]["files"]["figures"]
        assert {"cell_text", "gate_saturation", "topk_predictions", "cell_heatmap"} <= set(figures)


def test_foreign_gru_and_rnn_together(tmp_path):
    class TwoCells(TinyLM):
        def __init__(self) -> None:
            super().__init__(cell=nn.GRU)
            self.decoder = nn.RNN(8, 8)  # time first

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            out, _ = self.encoder["lstm"](self.embed(ids))
            out, _ = self.decoder(out.transpose(0, 1), torch.zeros(1, ids.shape[0], 8))
            return self.head(out.transpose(0, 1))

    monitor = LSTMActivationMonitor(probe_tensors=[torch.tensor([VOCAB.index(c) for c in PROBE])],
                                    every_n_train_steps=None, html=False)
    trainer = fit(tmp_path, TwoCells(), [monitor], max_steps=2)
    record = index(Path(trainer.logger.log_dir) / "lstm_interp")["recordings"]
    assert [r["step"] for r in record] == [2]
    figures = set(record[0]["files"]["figures"])
    assert {"cell_text_decoder", "cell_heatmap_decoder", "gate_saturation_encoder.lstm"} <= figures
    assert "gate_saturation_decoder" not in figures and "topk_predictions_decoder" not in figures  # no gates, chars
    tensors = load_file(Path(trainer.logger.log_dir) / "lstm_interp" / "step_2.safetensors")
    assert {"probe0/encoder.lstm.0.update_gate", "probe0/decoder.hidden"} <= set(tensors)
    assert "encoder.lstm.1/reset_gate/left_saturated" in record[0]["summary"]


def test_bidirectional_lstm_records_both_directions(tmp_path):
    # Refused until issue 10; now each direction is a layer of its own, the reverse one named `<layer>.reverse`.
    monitor = LSTMActivationMonitor(PROBE, chars=VOCAB, dtype=torch.float32)
    trainer = fit(tmp_path, TinyLM(bidirectional=True), [monitor])
    tensors = load_file(Path(trainer.logger.log_dir) / "lstm_interp" / "step_4.safetensors")
    for layer in ("encoder.lstm.0", "encoder.lstm.0.reverse", "encoder.lstm.1", "encoder.lstm.1.reverse"):
        assert tensors[f"probe0/{layer}.cell"].shape == (len(PROBE), 8)


def test_packed_sequence_is_traced_at_its_real_length(tmp_path):
    # Refused until issue 10; now the probe runs through the module's own packing.
    class Packed(TinyLM):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), [ids.shape[1]] * len(ids), batch_first=True)
            out, _ = self.encoder["lstm"](packed)
            return self.head(nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0])

    module = Packed()
    trainer = fit(tmp_path, module, [LSTMActivationMonitor(PROBE, chars=VOCAB)])
    tensors = load_file(Path(trainer.logger.log_dir) / "lstm_interp" / "step_4.safetensors")
    assert tensors["probe0/encoder.lstm.1.cell"].shape == (len(PROBE), 8)
    assert not any(m._forward_pre_hooks for m in module.modules())  # the capture hooks are removed


# ---------------------------------------------------------------------------------------------- resume, two monitors
@pytest.mark.parametrize(
    ("every", "in_checkpoint", "expected"),
    [
        (2, [2, 4, 6], [2, 4, 6, 8, 10, 12]),
        # Step 6 is recorded at the end of fit, after the last checkpoint: the resumed run finds it in index.json.
        (4, [4], [4, 6, 8, 12]),
    ],
)
def test_resume_continues_numbering_without_duplicates(tmp_path, every, in_checkpoint, expected):
    def monitor() -> LSTMActivationMonitor:
        return LSTMActivationMonitor(PROBE, every_n_train_steps=every, log_figures=False, html=False)

    first = monitor()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    logger = TensorBoardLogger(tmp_path, name="tb", version="run")  # one folder for both runs
    fit(tmp_path, char_module(), [first, checkpoint], max_steps=6, limit_train_batches=3, enable_checkpointing=True,
        logger=logger)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert [r["step"] for r in saved["callbacks"][first.state_key]["recordings"]] == in_checkpoint

    second = monitor()
    fit(tmp_path, char_module(), [second, ModelCheckpoint(dirpath=tmp_path / "ckpt")], max_steps=12,
        limit_train_batches=3, enable_checkpointing=True, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
        logger=TensorBoardLogger(tmp_path, name="tb", version="run"))
    folder = Path(logger.log_dir) / "lstm_interp"
    assert [r["step"] for r in index(folder)["recordings"]] == expected  # each step once
    assert second.recorded_steps == expected  # the whole history, for the saturation-history figure too
    assert all((folder / f"step_{s}.safetensors").is_file() for s in expected)
    scalars = events(logger).Scalars("lstm_interp/layers.0/forget_gate/right_saturated")
    assert sorted({e.step for e in scalars}) == expected


def test_state_round_trips_and_a_resumed_fit_keeps_the_name(tmp_path):
    def pair() -> list[LSTMActivationMonitor]:
        return [LSTMActivationMonitor(text, every_n_train_steps=None, log_figures=False, html=False)
                for text in (PROBE, "the cat.\n")]

    first_a, first_b = pair()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit(tmp_path, char_module(), [first_a, first_b, checkpoint], max_steps=2, limit_train_batches=2,
        enable_checkpointing=True, logger=TensorBoardLogger(tmp_path, name="tb", version="run"))
    assert first_b.name == f"lstm_interp_{first_b.probe_hash}"  # the second unnamed monitor of that trainer

    state = first_b.state_dict()
    fresh = pair()[1]
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state and fresh.name == first_b.name

    # Resumed alone, the monitor would be the trainer's first unnamed one: the checkpoint's name must win.
    resumed = pair()[1]
    logger = TensorBoardLogger(tmp_path, name="tb", version="run")
    fit(tmp_path, char_module(), [resumed], max_steps=4, limit_train_batches=2,
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"), logger=logger)
    assert resumed.name == first_b.name
    assert [r["step"] for r in index(Path(logger.log_dir) / first_b.name)["recordings"]] == [2, 4]
    assert [r["step"] for r in index(Path(logger.log_dir) / "lstm_interp")["recordings"]] == [2]  # A's, untouched


def test_two_monitors_write_apart(tmp_path):
    a = LSTMActivationMonitor(PROBE, every_n_train_steps=None, log_figures=False, html=False)
    b = LSTMActivationMonitor("the cat.\n", every_n_train_steps=None, log_figures=False, html=False)
    assert a.state_key != b.state_key
    trainer = fit(tmp_path, char_module(), [a, b], max_steps=2)
    log_dir = Path(trainer.logger.log_dir)
    assert b.name == f"lstm_interp_{b.probe_hash}"
    assert index(log_dir / "lstm_interp")["probe_texts"] == [PROBE]
    assert index(log_dir / b.name)["probe_texts"] == ["the cat.\n"]
    scalars = events(trainer.logger).Tags()["scalars"]
    assert f"{b.name}/layers.0/cell/mean" in scalars and "lstm_interp/layers.0/cell/mean" in scalars

    with pytest.raises(RuntimeError, match="more than one stateful callback of type `LSTMActivationMonitor`"):
        fit(tmp_path, char_module(), [LSTMActivationMonitor(PROBE), LSTMActivationMonitor(PROBE)])
    twins = [LSTMActivationMonitor(PROBE, name="probe"), LSTMActivationMonitor("the", name="probe")]
    with pytest.raises(ValueError, match="two LSTMActivationMonitors are named 'probe'"):
        fit(tmp_path, char_module(), twins)


def test_ddp_two_processes_only_rank_zero_writes(tmp_path):
    script = Path(__file__).with_name("_ddp_monitor_script.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = tmp_path / "rec"
    steps = [r["step"] for r in index(folder)["recordings"]]
    assert steps == [2, 4]
    assert sorted(p.name for p in folder.glob("step_*.safetensors")) == ["step_2.safetensors", "step_4.safetensors"]
    reports = {r: json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in (0, 1)}
    assert reports[0] == {"recordings": 2, "writes": 2} and reports[1] == {"recordings": 0, "writes": 0}


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probe_texts": []}, r"`probe_texts` is empty \(\[\]\)"),
        ({"probe_texts": ["ok", ""]}, r"`probe_texts\[1\]` is an empty text \(''\)"),
        ({}, "give `probe_texts`"),
        ({"probe_texts": "a", "every_n_train_steps": 0}, "`every_n_train_steps` must be a positive .*, got 0"),
        ({"probe_texts": "a", "every_n_epochs": -2}, "`every_n_epochs` must be a positive integer or None, got -2"),
        ({"probe_texts": "a", "saturation_thresholds": (0.0, 0.9)}, r"0 < low < high < 1, got \(0.0, 0.9\)"),
        ({"probe_texts": "a", "saturation_thresholds": (0.9, 0.1)}, r"got \(0.9, 0.1\)"),
        ({"probe_texts": "a", "saturation_thresholds": (0.5, 1.0)}, r"got \(0.5, 1.0\)"),
        ({"probe_texts": "a", "quantities": ["cell", "forget"]}, r"\['forget'\] are not known"),
        ({"probe_texts": "a", "dtype": torch.int8}, "`dtype` must be one of"),
        ({"probe_texts": "a", "cells_to_plot": 0}, "`cells_to_plot` must be a positive integer, got 0"),
        ({"probe_texts": "a", "on_unknown": "replace"}, "`on_unknown` must be 'error' or 'skip', got 'replace'"),
        ({"probe_texts": "a", "features": ["inside_quote"]}, r"unknown feature 'inside_quote' \(did you mean"),
        ({"probe_texts": "a", "features": []}, r"`features` is empty \(\[\]\)"),
        ({"probe_tensors": [torch.ones(3, dtype=torch.long)], "features": "inside_quotes"}, "give `probe_texts`"),
        ({"probe_texts": "a", "features": "inside_quotes", "feature_top": 0}, "`feature_top` must be a positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LSTMActivationMonitor(**kwargs)


def test_dirpath_that_is_a_file_is_refused_at_once(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file", encoding="utf-8")
    with pytest.raises(ValueError, match=r"`dirpath` '.*taken' is a file; give a folder"):
        LSTMActivationMonitor("a", dirpath=taken)


def test_probe_characters_outside_the_vocabulary(tmp_path):
    with pytest.raises(VocabularyError, match=r"`probe_texts\[0\]`.*'Z' \(first at 4\), 'Q'") as raised:
        fit(tmp_path, char_module(), [LSTMActivationMonitor("the ZQ cat")])
    # The hint names what the monitor takes (it refuses 'replace').
    assert "on_unknown='skip' to the LSTMActivationMonitor" in str(raised.value) and "replace" not in str(raised.value)
    skipping = LSTMActivationMonitor("the ZQ cat", on_unknown="skip", every_n_train_steps=None, log_figures=False,
                                     html=False)
    with pytest.warns(UserWarning, match=r"loses \['Q', 'Z'\]"):
        trainer = fit(tmp_path, char_module(), [skipping], max_steps=1)
    assert index(Path(trainer.logger.log_dir) / "lstm_interp")["probe_texts"] == ["the  cat"]


def test_modules_that_do_not_exist(tmp_path):
    class NoRNN(TinyLM):
        def __init__(self) -> None:
            super().__init__()
            del self.encoder

    message = (r"NoRNN has no recurrent module to monitor: the monitor follows nn\.LSTM, nn\.GRU and nn\.RNN modules "
               r"given sequences, and nn\.LSTMCell, nn\.GRUCell and nn\.RNNCell")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        fit(tmp_path, NoRNN(), [LSTMActivationMonitor(PROBE, chars=VOCAB)])
    with pytest.raises(ValueError, match=r"\['decoder.lstm'\] match no recurrent module of TinyLM; its recurrent "
                                         r"modules are \['encoder.lstm'\]"):
        fit(tmp_path, TinyLM(), [LSTMActivationMonitor(PROBE, chars=VOCAB, modules=["decoder.lstm"])])
    with pytest.raises(ValueError, match="give `encode=`"):
        fit(tmp_path, TinyLM(), [LSTMActivationMonitor(PROBE)])
    with pytest.raises(ValueError, match=r"`quantities` \['forget_gate'\] are not quantities of 'encoder.lstm'"):
        fit(tmp_path, TinyLM(cell=nn.GRU), [LSTMActivationMonitor(PROBE, chars=VOCAB, quantities=["forget_gate"])])


def test_logger_without_images_warns_once_and_keeps_pngs(tmp_path):
    logger, image_logger = ImagelessLogger(), ImageLogger()
    monitor = LSTMActivationMonitor(PROBE, every_n_train_steps=2, html=False)
    with pytest.warns(UserWarning, match="ImagelessLogger takes neither") as caught:
        fit(tmp_path, char_module(), [monitor], logger=[logger, image_logger])
    assert sum("ImagelessLogger" in str(w.message) for w in caught) == 1
    folder = tmp_path / "lstm_interp"  # a logger without log_dir: its save_dir (None), so default_root_dir
    assert (folder / "step_2_cell_text.png").is_file() and (folder / "step_4_gate_saturation.png").is_file()
    for each in (logger, image_logger):
        steps = [step for step, metrics in each.metrics if "lstm_interp/layers.0/forget_gate/left_saturated" in metrics]
        assert steps == [2, 4]
    key, step, shape, dtype = image_logger.images[0]
    assert (key, step, shape[2], dtype) == ("lstm_interp/cell_text", 2, 3, np.uint8)
    assert sum(key == "lstm_interp/saturation_history" for key, *_ in image_logger.images) == 2


def test_nonfinite_activations_warn_and_still_plot(tmp_path):
    module = char_module()
    with torch.no_grad():
        module.network.layers[1].weight_hh_l0[0, 0] = float("nan")
    monitor = LSTMActivationMonitor(PROBE, every_n_train_steps=None, html=False)
    with pytest.warns(UserWarning, match=r"\d+ activation values at step 1 are NaN or infinite"):
        trainer = fit(tmp_path, module, [monitor], max_steps=1)
    folder = Path(trainer.logger.log_dir) / "lstm_interp"
    record = index(folder)["recordings"][0]
    assert record["nonfinite"] > 0
    assert {"cell_text", "gate_saturation", "cell_heatmap"} <= set(record["files"]["figures"])
    assert all(v is None or math.isfinite(v) for v in record["summary"].values())


# ------------------------------------------------------------------------------------------------- on disk
def test_the_folder_has_a_manifest_and_a_killed_recordings_leftovers_go(tmp_path):
    folder = tmp_path / "records"
    monitor = LSTMActivationMonitor(PROBE, every_n_train_steps=2, dirpath=folder, html=False)
    fit(tmp_path, char_module(), [monitor])
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    del on_disk["manifest.json"]
    assert manifest["kind"] == "monitor" and manifest["files"] == on_disk
    assert manifest["texts"] == {"probe0": text_provenance(PROBE)}
    assert manifest["model"]["class"] == "CharLSTM" and manifest["arguments"]["quantities"]
    # What a run killed mid-recording leaves: files the index does not list, and an atomic write's temporary.
    (folder / "step_7_cell_text.png").write_bytes(b"half a recording")
    (folder / ".step_7.safetensors.k2j3.tmp").write_bytes(b"half a file")
    (folder / "notes.txt").write_text("the user's own")  # never touched
    fit(tmp_path, char_module(), [LSTMActivationMonitor(PROBE, every_n_train_steps=2, dirpath=folder)])
    names = {p.name for p in folder.iterdir()}
    assert "step_7_cell_text.png" not in names and ".step_7.safetensors.k2j3.tmp" not in names
    assert "notes.txt" in names
    listed = {f for r in index(folder)["recordings"] for v in r["files"].values() for f in (
        v.values() if isinstance(v, dict) else [v])}
    assert {n for n in names if n.startswith("step_")} == listed
