"""Run by ``tests/test_activation_monitor.py``: fit under ``strategy="ddp"`` on 2 CPU processes with a monitor.

Lightning's DDP launcher starts rank 1 by running this script again, which is why this is a script and not a test.
Each rank writes ``rank_<r>.json``: how many recordings it made and how many activation files it wrote.

Usage::

    python tests/_ddp_monitor_script.py <output folder>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import lstm_interp.callbacks._monitor_recording as recording
import torch
from lstm_interp.callbacks import LSTMActivationMonitor

from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 20


def main(out: Path) -> None:
    writes = 0
    save_activations = recording.save_activations

    def counting_save(*args: Any, **kwargs: Any) -> None:
        nonlocal writes
        writes += 1
        save_activations(*args, **kwargs)

    recording.save_activations = counting_save
    torch.set_num_threads(1)  # two processes on a shared 2-core machine
    torch.manual_seed(0)
    data = CharDataModule(text=TEXT, batch_size=4, seq_len=16, cache_dir=str(out / "cache"))
    module = CharLSTMModule(hidden_size=8, embedding_size=4, lr_schedule="constant")
    monitor = LSTMActivationMonitor("the dog sat.\n", every_n_train_steps=2, dirpath=out / "rec", log_figures=False,
                                    html=False)
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_steps=4,
        limit_val_batches=0,
        default_root_dir=out,
        logger=pl.loggers.TensorBoardLogger(out, name="tb"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
    )
    trainer.fit(module, datamodule=data)
    report = {"recordings": len(monitor.recordings), "writes": writes}
    (out / f"rank_{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
