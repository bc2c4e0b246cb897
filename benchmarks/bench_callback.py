"""Cost of ``LSTMActivationMonitor`` at its default settings: training throughput with and without it.

A 2-layer, 256-unit ``CharLSTMModule`` trains on the bundled *War and Peace* (``CharDataModule(corpus=
"war_and_peace")``) with a ``TensorBoardLogger`` in both runs, so the only difference is the monitor: one probe text
(a passage of the book), every other argument at its default. The default schedule records every 500 steps and at
the end of training (skipped when that step was just recorded), so ``--steps 1500`` makes three recordings: steps
500, 1000 and 1500. Timing runs from the start of step ``--warmup`` to the end of training (``on_train_end``, after
the monitor's own), so every recording is counted. The two runs alternate ``--rounds`` times (the machine is shared
and noisy), starting with a different one each round, and the best round of each is kept.

Besides the two throughputs, the monitor's own time per recording is measured (tracing, statistics, safetensors,
figures, HTML, index), which gives the overhead of any other interval: ``recording / (interval * step time)``.

Usage::

    python benchmarks/bench_callback.py [--steps 1500] [--warmup 10] [--rounds 2] [--batch 64] [--seq 100]
                                        [--threads N] [--probe-chars 400]
    python benchmarks/bench_callback.py --recordings [--threads N]
    python benchmarks/bench_callback.py --recordings --cells [--threads N]

Target: overhead <= 5%.

``--recordings`` measures, in one short run each, the time of one recording and of one training step, side by side,
for two models: the 2x256 ``CharLSTMModule`` above with a 400-character probe, and a foreign LightningModule with a
2-layer, 256-unit *bidirectional* ``nn.LSTM`` (a tagger's encoder: embedding 64 -> BiLSTM -> linear) with a
400-token probe (``encode=``, ``tokens=``). The overhead at the default interval is ``recording / (500 * step)``.

``--recordings --cells`` does the same for a decoder that steps two ``nn.LSTMCell`` (256 units each, embedding 64)
in a Python loop, one call per character, next to an ``nn.LSTM`` of the same size (2 layers, 256 units) given the
whole sequence, both with the 400-step probe: the cost of following 800 hand-made calls against one fused call.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lstm_interp.callbacks import LSTMActivationMonitor

from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule


class Timer(pl.Callback):
    """Wall time from the start of step ``warmup`` to the end of training (placed after the monitor)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.end = time.perf_counter()


class TimedMonitor(LSTMActivationMonitor):
    """The monitor, also noting how long each recording takes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        before = len(self.recordings)
        start = time.perf_counter()
        super()._record(trainer, pl_module)
        if len(self.recordings) > before:
            self.seconds.append(time.perf_counter() - start)


def run(args: argparse.Namespace, dm: CharDataModule, probe: str | None, root: Path) -> tuple[float, list[float]]:
    # The vocabulary comes from the datamodule (giving it to both would clash in the logged hyperparameters).
    module = CharLSTMModule(num_layers=2, hidden_size=256, embedding_size=64, lr=2e-3, lr_schedule="constant")
    timer = Timer(args.warmup)
    monitor = TimedMonitor(probe) if probe is not None else None
    trainer = pl.Trainer(
        max_steps=args.steps,
        gradient_clip_val=5.0,
        limit_val_batches=0,
        logger=TensorBoardLogger(root, name="monitor" if monitor else "baseline"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor, timer] if monitor else [timer],
    )
    torch.manual_seed(0)  # the network is built in `configure_model`: the same initial weights in every run
    trainer.fit(module, datamodule=dm)
    assert timer.start is not None and timer.end is not None
    return timer.end - timer.start, monitor.seconds if monitor else []


class BiLSTMTagger(pl.LightningModule):
    """Embedding -> 2-layer bidirectional nn.LSTM (256 units each way) -> linear: a module lstm_interp did not build."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, 64)
        self.lstm = torch.nn.LSTM(64, 256, num_layers=2, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(512, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=2e-3)


class SequenceLM(pl.LightningModule):
    """Embedding 64 -> 2-layer nn.LSTM (256) given the whole sequence -> linear."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, 64)
        self.lstm = torch.nn.LSTM(64, 256, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(256, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])

    training_step = BiLSTMTagger.training_step
    configure_optimizers = BiLSTMTagger.configure_optimizers


class CellDecoder(SequenceLM):
    """The same sizes, but two nn.LSTMCell stepped by hand, one call each per character (a decoder's loop)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__(vocab_size)
        del self.lstm
        self.cells = torch.nn.ModuleList([torch.nn.LSTMCell(64, 256), torch.nn.LSTMCell(256, 256)])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embed(ids)
        states: list[Any] = [None, None]
        outputs = []
        for t in range(ids.shape[1]):
            x = e[:, t]
            for k, cell in enumerate(self.cells):
                states[k] = cell(x, states[k])
                x = states[k][0]
            outputs.append(x)
        return self.head(torch.stack(outputs, dim=1))


def time_recordings(args: argparse.Namespace) -> None:
    """One recording and one step of each model, side by side (see the module docstring)."""
    steps, every = 12, 4  # recordings at steps 4, 8, 12; steps 2..12 timed
    with tempfile.TemporaryDirectory() as tmp:
        dm = CharDataModule(corpus="war_and_peace", batch_size=args.batch, seq_len=args.seq, cache_dir=tmp)
        dm.prepare_data()
        dm.setup("fit")
        probe = dm.corpus.text(len(dm.corpus) - args.probe_chars, len(dm.corpus))
        vocab = dm.vocab
        rows = []
        labels = ("nn.LSTM 2x256", "2 nn.LSTMCell x256") if args.cells else ("CharLSTMModule 2x256",
                                                                               "BiLSTM tagger 2x256x2")  # fmt: skip
        foreign = {"BiLSTM tagger 2x256x2": BiLSTMTagger, "nn.LSTM 2x256": SequenceLM,
                   "2 nn.LSTMCell x256": CellDecoder}  # fmt: skip
        for label in labels:
            results = {}
            for with_monitor in (False, True):
                torch.manual_seed(0)
                if label.startswith("Char"):
                    module: pl.LightningModule = CharLSTMModule(
                        num_layers=2, hidden_size=256, embedding_size=64, lr=2e-3, lr_schedule="constant"
                    )
                    monitor = TimedMonitor(probe, every_n_train_steps=every)
                else:
                    module = foreign[label](len(vocab))
                    monitor = TimedMonitor(
                        probe, encode=vocab.encode, chars=vocab.chars, tokens=[list(probe)], every_n_train_steps=every
                    )
                timer = Timer(2)
                trainer = pl.Trainer(
                    max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp,
                    callbacks=[monitor, timer] if with_monitor else [timer],
                )  # fmt: skip
                trainer.fit(module, datamodule=dm)
                assert timer.start is not None and timer.end is not None
                results[with_monitor] = (timer.end - timer.start, monitor.seconds)
            plain, _ = results[False]
            step_s = plain / (steps - 2)
            record_s = sorted(results[True][1])[len(results[True][1]) // 2]
            rows.append((label, step_s, record_s, len(results[True][1])))
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"batch {args.batch} x {args.seq}; probe {args.probe_chars} characters or tokens")
    print(f"{'model':<24} {'one step':>10} {'one recording':>14} {'ratio':>7}  {'overhead every 500 steps':>24}")
    for label, step_s, record_s, n in rows:
        print(f"{label:<24} {step_s * 1000:>8.0f}ms {record_s:>13.2f}s {record_s / step_s:>6.1f}x  "
              f"{100 * record_s / (500 * step_s):>23.2f}%   (median of {n} recordings)")
    if args.cells:
        (_, lstm_step, lstm_record, _), (_, cell_step, cell_record, _) = rows
        print(f"2 nn.LSTMCell / nn.LSTM: one recording {cell_record / lstm_record:.2f}x, one step "
              f"{cell_step / lstm_step:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--probe-chars", type=int, default=400, help="length of the probe passage")
    parser.add_argument("--recordings", action="store_true", help="time one recording and one step of two models")
    cells = "with --recordings: two nn.LSTMCell stepped by hand, against an nn.LSTM of that size"
    parser.add_argument("--cells", action="store_true", help=cells)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.recordings:
        time_recordings(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        dm = CharDataModule(corpus="war_and_peace", batch_size=args.batch, seq_len=args.seq, cache_dir=tmp)
        dm.prepare_data()
        dm.setup("fit")
        probe = dm.corpus.text(len(dm.corpus) - args.probe_chars, len(dm.corpus))  # from the test part
        base_times: list[float] = []
        monitor_times: list[float] = []
        recordings: list[float] = []
        for round_ in range(args.rounds):
            for with_monitor in (round_ % 2 == 1, round_ % 2 == 0):
                seconds, record = run(args, dm, probe if with_monitor else None, Path(tmp) / f"round{round_}")
                (monitor_times if with_monitor else base_times).append(seconds)
                recordings += record
                print(f"round {round_}: {'with' if with_monitor else 'without'} monitor {seconds:.1f}s", flush=True)

    chars = (args.steps - args.warmup) * args.batch * args.seq
    base_cps, monitor_cps = chars / min(base_times), chars / min(monitor_times)
    step_s = min(base_times) / (args.steps - args.warmup)
    per_recording = sorted(recordings)[len(recordings) // 2]
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: 2x256 LSTM; batch {args.batch} x {args.seq}; {args.steps - args.warmup} timed steps after "
          f"{args.warmup}; probe {len(probe)} chars; best of {args.rounds} alternating rounds")
    print(f"without monitor  {base_cps:9.0f} chars/s  (rounds: {', '.join(f'{t:.1f}s' for t in base_times)})")
    print(f"with monitor     {monitor_cps:9.0f} chars/s  (rounds: {', '.join(f'{t:.1f}s' for t in monitor_times)})")
    print(f"overhead: {100 * (base_cps - monitor_cps) / base_cps:.2f}%  "
          f"({len(recordings) // args.rounds} recordings per run)")
    print(f"one recording: {per_recording:.2f}s median of {len(recordings)}; one step: {step_s * 1000:.0f} ms; "
          f"so every 500 steps costs {100 * per_recording / (500 * step_s):.2f}% of training time")


if __name__ == "__main__":
    main()
