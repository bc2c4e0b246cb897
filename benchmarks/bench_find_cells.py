"""Time ``find_cells`` (one binary, one continuous feature) and ``explain_unit`` over every registered feature.

Usage::

    python benchmarks/bench_find_cells.py [--chars 100000] [--layers 2] [--hidden 512] [--dtype float32]
                                          [--repeats 3] [--model]

The trace holds one cell-state tensor per layer. By default the tensors are random (tracing is not what is timed);
``--model`` traces an untrained ``CharLSTM`` instead (about 10 s more). The text mixes prose and C-like code so that
every registered feature varies. Each timing is the best of ``--repeats`` runs, wall clock and process CPU time
(both threads); the target is under 5 s for a 100,000-character trace of a 2 x 512 model on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from lstm_interp import CharLSTM, CharLSTMConfig, CharVocab, trace
from lstm_interp.analysis.explain_unit import explain_unit
from lstm_interp.analysis.find_cells import find_cells
from lstm_interp.features import FEATURES, compute_feature
from lstm_interp.tracing import Trace

PIECES = [
    "the", "cat", "said", "x", "y_1", "if (a > b)", "if(c)", "{", "}", "[i]", "(", ")", '"quoted text"', "/* note */",
    "// comment\n", "http://example.com/a", ";", ",", ".", "\n", "\n    ", "\n\t", "'c'", "return", "else if (d)",
]  # fmt: skip


def make_text(chars: int, seed: int = 0) -> str:
    """Random prose-and-code text of exactly ``chars`` characters."""
    rng = np.random.default_rng(seed)
    parts, length = [], 0
    while length < chars:
        piece = PIECES[rng.integers(len(PIECES))] + " "
        parts.append(piece)
        length += len(piece)
    return "".join(parts)[:chars]


def make_trace(text: str, layers: int, hidden: int, dtype: torch.dtype, model: bool) -> Trace:
    if model:
        torch.manual_seed(0)
        vocab = CharVocab.from_text(text)
        config = CharLSTMConfig(vocab_size=len(vocab), num_layers=layers, hidden_size=hidden, embedding_size=64)
        return trace(CharLSTM(config, vocab), text, names_filter="layers.*.cell", dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    cells = {f"layers.{i}.cell": torch.randn(len(text), hidden, generator=generator).to(dtype) for i in range(layers)}
    return Trace(cells, text=text, tokens=torch.arange(len(text)), cell="lstm", num_layers=layers)


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", action="store_true", help="trace an untrained CharLSTM instead of random cells")
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}; "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    text = make_text(args.chars)
    start = time.perf_counter()
    tr = make_trace(text, args.layers, args.hidden, getattr(torch, args.dtype), args.model)
    source = "untrained CharLSTM" if args.model else "random cells"
    seconds = time.perf_counter() - start
    print(f"trace: {source}, {args.layers} x {args.hidden}, {len(text):,} chars, {args.dtype} ({seconds:.1f} s)")

    wall, cpu = best_time(lambda: [compute_feature(name, text) for name in FEATURES], args.repeats)
    print(f"{'all ' + str(len(FEATURES)) + ' features on the text':48s} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    timings = {
        "find_cells(inside_quotes)      [binary, AUC]": lambda: find_cells(tr, "inside_quotes"),
        "find_cells(position_in_line)   [Pearson]": lambda: find_cells(tr, "position_in_line"),
        f"explain_unit(layers.0, 0)      [{len(FEATURES)} features]": lambda: explain_unit(tr, 0, 0, top=None),
    }
    for label, fn in timings.items():
        wall, cpu = best_time(fn, args.repeats)
        verdict = "PASS" if wall < 5 else "over 5 s"
        print(f"{label:48s} wall {wall:6.2f} s   cpu {cpu:6.2f} s   {verdict}")
    print(find_cells(tr, "inside_quotes", top=3))


if __name__ == "__main__":
    main()
