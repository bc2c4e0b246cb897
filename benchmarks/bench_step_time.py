"""Seconds per training step of candidate char-LSTM sizes, as the pretrained models' runs would take them.

Each size runs in its own process with one intra-op thread, two processes at a time (the two pretrained runs shared
this 2-core machine that way), on random batches of 64 x 100 characters with bf16 autocast, AdamW and backward;
the median of 6 timed steps after 2 warm-up steps is printed. This is how ``configs/novel.yaml`` and
``configs/code.yaml`` were sized (``benchmarks/RESULTS.md``, "Pretrained models")::

    python benchmarks/bench_step_time.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

SIZES = ((2, 256), (2, 384), (2, 512), (3, 512))


def one(layers: int, hidden: int, vocab: int, steps: int) -> float:
    from lstm_interp import CharLSTM, CharLSTMConfig

    torch.set_num_threads(1)
    net = CharLSTM(CharLSTMConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, dropout=0.1))
    opt = torch.optim.AdamW(net.parameters(), 2e-3)
    x, y = torch.randint(0, vocab, (64, 100)), torch.randint(0, vocab, (64, 100))
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=100)
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # LAYERS HIDDEN, in a child process
    args = parser.parse_args()
    if args.one:
        print(f"{one(*args.one, args.vocab, args.steps):.3f}")
        return
    print(f"torch {torch.__version__}; batch 64 x 100, bf16 autocast, AdamW, 1 thread per process, 2 processes at once")
    for pair in (SIZES[0:2], SIZES[2:4]):
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--one", str(layers), str(hidden), "--steps", str(args.steps)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for layers, hidden in pair
        ]
        for (layers, hidden), proc in zip(pair, procs, strict=True):
            out, _ = proc.communicate()
            print(f"{layers}x{hidden:<4} {float(out):.3f} s/step")


if __name__ == "__main__":
    main()
