"""LSTMActivationMonitor on models whose time steps are not characters: a word-level LM labelled with ``tokens=``
or ``decode=``, drawn as words in the cell-text figure and the HTML report (real Trainer, real headless Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from browser import launch, open_report
from lstm_interp.callbacks import LSTMActivationMonitor
from pictures import assert_picture
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

WORDS = ["<s>", "the", "cat", "sat", "on", "mat", "and", "dog", "ran", "."]
PROBE = ["the", "cat", "sat", "on", "the", "mat", "and", "the", "dog", "ran", "."]


def encode(text: str) -> torch.Tensor:
    return torch.tensor([WORDS.index(w) for w in text.split()])


class WordLM(pl.LightningModule):
    """Embedding -> nn.LSTM -> linear over a ten-word vocabulary: one time step per word."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(len(WORDS), 4)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, len(WORDS))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x).reshape(-1, len(WORDS)), y.reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path: Path, monitor: LSTMActivationMonitor) -> Path:
    torch.manual_seed(0)
    ids = torch.randint(0, len(WORDS), (16, 9))
    loader = DataLoader(TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=4)
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
    )  # fmt: skip
    trainer.fit(WordLM(), loader)
    return tmp_path / "lstm_interp"


@pytest.mark.parametrize("how", ["tokens", "decode"])
def test_word_steps_are_drawn_as_words(tmp_path, how):
    labels = {"tokens": [PROBE]} if how == "tokens" else {"decode": lambda ids: [WORDS[int(i)] for i in ids]}
    monitor = LSTMActivationMonitor([" ".join(PROBE)], encode=encode, every_n_train_steps=1, **labels)
    folder = fit(tmp_path, monitor)
    assert_picture(folder / "step_2_cell_text.png", min_width=400, min_height=150)
    html = (folder / "step_2.html").read_text(encoding="utf-8")
    meta = json.loads(re.search(r'<script type="application/json" id="report-meta">(.*?)</script>', html).group(1))
    assert meta["probes"][0]["tokens"] == PROBE
    with launch() as browser, open_report(browser, folder / "step_2.html") as (page, log):
        spans = page.locator("#text span").all_inner_texts()
        assert spans == PROBE  # one span per word, each the whole word
        assert page.locator("#text").inner_text().startswith("the cat sat on")  # a space apart
        assert log.errors == []


def test_labels_of_the_wrong_length_name_both_lengths(tmp_path):
    monitor = LSTMActivationMonitor([" ".join(PROBE)], encode=encode, tokens=[PROBE[:-2]])
    with pytest.raises(ValueError, match=r"probe 0 has 9 step labels .* run 'lstm' 11 time steps"):
        fit(tmp_path, monitor)
    with pytest.raises(ValueError, match=r"`tokens` has 2 lists for 1 probes"):
        LSTMActivationMonitor(["a b"], encode=encode, tokens=[["a", "b"], ["c"]])
    with pytest.raises(ValueError, match="give `tokens=` or `decode=`, not both"):
        LSTMActivationMonitor(["a b"], encode=encode, tokens=[["a", "b"]], decode=lambda ids: [])
    bad_decode = LSTMActivationMonitor([" ".join(PROBE)], encode=encode, decode=lambda ids: ["x"])
    with pytest.raises(ValueError, match=r"`decode` gave 1 strings for the 11 ids of probe 0"):
        fit(tmp_path / "decode", bad_decode)


def test_a_probe_the_forward_rejects_fails_at_fit_start_with_its_own_error(tmp_path):
    # The second probe is a float tensor: nn.Embedding refuses it. The module's own error surfaces at fit start,
    # before any step is trained or any file written.
    good = encode(" ".join(PROBE))
    monitor = LSTMActivationMonitor(probe_tensors=[good, torch.rand(5)], every_n_train_steps=1)
    with pytest.raises(RuntimeError, match="Expected tensor for argument #1 'indices'"):
        fit(tmp_path, monitor)
    assert not (tmp_path / "lstm_interp").exists()
