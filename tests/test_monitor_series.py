"""LSTMActivationMonitor on a model fed float vectors (a forecaster): the series figure replaces the text figure."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from browser import launch, open_report
from lstm_interp.callbacks import LSTMActivationMonitor
from matplotlib.figure import Figure
from pictures import assert_picture
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lstm_interp.plots import plot_series
from lstm_interp.tracing import trace_rnn


class Forecaster(pl.LightningModule):
    """Three float channels in, the next value of the first out: nn.LSTM -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(3, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def series(T: int) -> torch.Tensor:
    t = torch.arange(T, dtype=torch.float32)
    return torch.stack([torch.sin(t / 8), (t % 40 < 20).float() * 2 - 1, torch.cos(t / 13)], dim=1)  # (T, 3)


def test_a_forecaster_gets_the_series_figure(tmp_path):
    x = series(64 * 9).reshape(64, 9, 3)
    loader = DataLoader(TensorDataset(x[:, :-1], x[:, 1:, :1]), batch_size=8)
    monitor = LSTMActivationMonitor(probe_tensors=[series(200)[None]], every_n_train_steps=2)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=2, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[monitor])  # fmt: skip
    trainer.fit(Forecaster(), loader)
    folder = tmp_path / "lstm_interp"
    assert (folder / "step_2_series.png").is_file() and not (folder / "step_2_cell_text.png").exists()
    pixels = assert_picture(folder / "step_2_series.png", min_width=600, min_height=200)
    # The input panel draws lines on white; the strips beneath are coloured: both halves show something.
    upper, lower = pixels[: len(pixels) // 3], pixels[len(pixels) // 2 :]
    assert len(np.unique(upper.reshape(-1, pixels.shape[2]), axis=0)) > 8
    assert len(np.unique(lower.reshape(-1, pixels.shape[2]), axis=0)) > 8
    # The HTML report shows the same view: the three channels as lines, one coloured block per step beneath.
    with launch() as browser, open_report(browser, folder / "step_2.html") as (page, log):
        assert page.locator("#series-chart polyline").count() == 3
        assert page.locator("#text span").count() == 200
        colours = page.evaluate("[...document.querySelectorAll('#text span')].map(s => s.style.backgroundColor)")
        assert len(set(colours)) > 5  # the unit changes colour along the series
        box = page.locator("#series-chart").bounding_box()
        first, last = page.locator("#text span").first.bounding_box(), page.locator("#text span").last.bounding_box()
        assert abs(first["x"] - box["x"]) < 2 and abs(last["x"] + last["width"] - box["x"] - box["width"]) < 2
        page.screenshot(path=str(tmp_path / "series_report.png"))
        assert log.errors == []


def test_plot_series_checks_its_inputs():
    lstm = nn.LSTM(3, 4)
    tr = trace_rnn(lstm, series(50), name="lstm")
    fig = plot_series(tr, series(50), [("lstm", 0), ("lstm", 3)], channel_names=["sin", "square", "cos"])
    assert isinstance(fig, Figure) and fig.axes[1].get_yticklabels()[1].get_text() == "lstm #3"
    with pytest.raises(ValueError, match=r"`inputs` must be \(T, channels\) with T = 50 steps"):
        plot_series(tr, series(49), [("lstm", 0)])
    with pytest.raises(ValueError, match="unit 9 is out of range for 'lstm', which has 4 units"):
        plot_series(tr, series(50), [("lstm", 9)])
    with pytest.raises(ValueError, match="`units` is empty"):
        plot_series(tr, series(50), [])
