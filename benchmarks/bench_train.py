"""Training throughput: ``Trainer.fit`` with ``CharLSTMModule`` against a plain hand-written PyTorch loop.

Both train the same network (same initial weights), on the same batches from the same ``CharDataModule``, with the
same optimiser (AdamW, constant learning rate), gradient clipping at 5 and precision. Timing skips the first
``--warmup`` steps of each run (allocation, kernel selection) and stops at the last step, so Lightning's one-time
setup is not counted but its per-step overhead (hooks, logging, metric, clipping) is. The two are run alternately
``--rounds`` times and the best round of each is kept.

Usage::

    python benchmarks/bench_train.py [--steps 60] [--hidden 256] [--layers 2] [--batch 64] [--seq 100]
                                     [--precision 32|bf16-mixed] [--rounds 3]

Target: Lightning / plain >= 0.9.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import lightning.pytorch as pl
import torch

from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule


class StepTimer(pl.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def make_module(args: argparse.Namespace, vocab: str) -> CharLSTMModule:
    torch.manual_seed(0)
    return CharLSTMModule(
        vocab=vocab, num_layers=args.layers, hidden_size=args.hidden, embedding_size=64, lr=2e-3,
        lr_schedule="constant",
    )


def run_lightning(args: argparse.Namespace, dm: CharDataModule) -> float:
    module = make_module(args, dm.vocab.chars)
    timer = StepTimer(args.warmup)
    trainer = pl.Trainer(
        max_steps=args.warmup + args.steps,
        precision=args.precision,
        gradient_clip_val=5.0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=dm)
    assert timer.start is not None and timer.end is not None
    return timer.end - timer.start


def run_plain(args: argparse.Namespace, dm: CharDataModule) -> float:
    network = make_module(args, dm.vocab.chars).network
    network.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    start = None
    step = 0
    while step < args.warmup + args.steps:
        for x, y in dm.train_dataloader():
            if step == args.warmup:
                start = time.perf_counter()
            with autocast:
                logits, _ = network(x)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimizer.step()
            step += 1
            if step == args.warmup + args.steps:
                break
    assert start is not None
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        dm = CharDataModule(corpus="war_and_peace", batch_size=args.batch, seq_len=args.seq, cache_dir=cache)
        dm.prepare_data()
        dm.setup("fit")
        lightning_times, plain_times = [], []
        for _ in range(args.rounds):
            lightning_times.append(run_lightning(args, dm))
            plain_times.append(run_plain(args, dm))
    chars = args.steps * args.batch * args.seq
    lightning_cps, plain_cps = chars / min(lightning_times), chars / min(plain_times)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: {args.layers}x{args.hidden} LSTM; batch {args.batch} x {args.seq}; precision {args.precision}; "
          f"{args.steps} timed steps after {args.warmup}; best of {args.rounds} alternating rounds")
    print(f"plain PyTorch loop   {plain_cps:10.0f} chars/s   (rounds: {', '.join(f'{t:.2f}s' for t in plain_times)})")
    print(f"Lightning Trainer    {lightning_cps:10.0f} chars/s   "
          f"(rounds: {', '.join(f'{t:.2f}s' for t in lightning_times)})")
    print(f"Lightning / plain = {lightning_cps / plain_cps:.3f}")


if __name__ == "__main__":
    main()
