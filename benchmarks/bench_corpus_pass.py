"""Corpus passes on Lightning's engine (issue 25): one process against two, and shards against one stream.

Three measurements on the pretrained ``novel`` model (2 x 512 LSTM) over ``--chars`` characters of War and Peace's
test part (the last 10 %):

1. **Throughput, 1 against 2 processes**, side by side: the analysis pass (``run_analysis``'s accumulator: the
   statistics, log-probabilities and every layer's cell state) and the state index build, each run as its own
   ``strategy="ddp"`` job on the CPU (``--devices 1`` and ``--devices 2``, one torch thread per process), alternating
   ``--rounds`` times; the best round of each is kept, and the ratio printed.
2. **Shards against one stream**: the same pass sharded (``--shard-chars``, warmed on ``--prime-chars``) against one
   uninterrupted stream over the whole text: the mean loss per character of each, and the best unit (and top 5) of
   some features by ``find_cells`` on each.
3. **Corpus scores against find_cells**: the AUC of every unit from ``CorpusScores``' per-bin counts (2,048 bins)
   against ``find_cells``'s exact AUC on the same sharded states: the largest difference, for the units that
   visibly switch, for the 20 best units, and for all (a unit pinned near +-1 varies within one bin, where the
   counts see a tie).

Usage::

    python benchmarks/bench_corpus_pass.py [--chars 200000] [--rounds 1] [--shard-chars 65536] [--prime-chars 1024]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lstm_interp import find_cells, load_pretrained
from lstm_interp.analysis import StateIndex
from lstm_interp.analysis.analysis_parts import AnalysisParts
from lstm_interp.analysis.corpus_pass import corpus_pass
from lstm_interp.analysis.corpus_scores import CorpusScores
from lstm_interp.tracing import Trace, trace_segments

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO.parent / "shared" / "data" / "war_and_peace.txt"
FEATURES = ("inside_quotes", "position_in_line", "inside_parens")


def held_out(chars: int, vocab: str) -> str:
    text = BOOK.read_text(encoding="utf-8")
    return "".join(c for c in text[int(len(text) * 0.9) :] if c in vocab)[:chars]


def worker(args: argparse.Namespace) -> None:
    """One timed pass on ``--devices`` processes (this script run again by Lightning for the other ranks)."""
    torch.set_num_threads(1)
    model = load_pretrained("novel")
    text = held_out(args.chars, model.vocab.chars)
    trainer = {"accelerator": "cpu", "devices": args.devices, "strategy": "ddp" if args.devices > 1 else "auto"}
    shards = {"shard_chars": args.shard_chars, "prime_chars": args.prime_chars}
    started = time.perf_counter()
    if args.worker == "analysis":
        cfg = model.config
        result = corpus_pass(model, text, functools.partial(AnalysisParts, cfg.cell, cfg.num_layers),
                             names_filter=AnalysisParts.trace_names(cfg.cell), **shards, **trainer)  # fmt: skip
        done = result is not None
    else:
        with tempfile.TemporaryDirectory() as folder:
            done = StateIndex.build(model, text, Path(folder) / "index", **shards, **trainer) is not None
    if done:  # rank 0
        print(json.dumps({"seconds": time.perf_counter() - started, "chars": len(text)}))


def timed(kind: str, devices: int, args: argparse.Namespace) -> float:
    command = [sys.executable, __file__, "--worker", kind, "--devices", str(devices), "--chars", str(args.chars),
               "--shard-chars", str(args.shard_chars), "--prime-chars", str(args.prime_chars)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def loss(parts: AnalysisParts) -> float:
    return float(-parts.stats.log_probs().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--shard-chars", type=int, default=65_536)
    parser.add_argument("--prime-chars", type=int, default=1_024)
    parser.add_argument("--worker", choices=("analysis", "index"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; novel (2x512 LSTM), "
          f"{args.chars:,} characters of War and Peace's test part; shards of {args.shard_chars:,} warmed on "
          f"{args.prime_chars:,}; one torch thread per process")  # fmt: skip
    for kind in ("analysis", "index"):
        times: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(args.rounds):
            for devices in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                times[devices].append(timed(kind, devices, args))
        one, two = min(times[1]), min(times[2])
        print(f"{kind:>8}: 1 process {args.chars / one:7.0f} chars/s ({one:.1f} s), 2 processes "
              f"{args.chars / two:7.0f} chars/s ({two:.1f} s): {one / two:.2f}x", flush=True)  # fmt: skip

    torch.set_num_threads(1)
    model = load_pretrained("novel")
    text = held_out(args.chars, model.vocab.chars)
    cfg = model.config
    make = functools.partial(AnalysisParts, cfg.cell, cfg.num_layers)
    sharded = corpus_pass(model, text, make, names_filter=AnalysisParts.trace_names(cfg.cell),
                          shard_chars=args.shard_chars, prime_chars=args.prime_chars)  # fmt: skip
    stream = make()
    for start, segment in trace_segments(model, text, names_filter=AnalysisParts.trace_names(cfg.cell)):
        stream.update(segment, start)
    print(f"loss per character: one stream {loss(stream):.5f}, shards {loss(sharded):.5f}, "
          f"difference {loss(sharded) - loss(stream):+.5f} nats")  # fmt: skip
    states: dict[str, Trace] = {"stream": stream.states(), "shards": sharded.states()}
    for feature in FEATURES:
        rows = {k: find_cells(tr, feature, top=5, controls=()).rows for k, tr in states.items()}
        best = {k: f"{r[0].layer}:{r[0].unit} ({r[0].score:.4f})" for k, r in rows.items()}
        overlap = len({(r.layer, r.unit) for r in rows["stream"]} & {(r.layer, r.unit) for r in rows["shards"]})
        print(f"  {feature}: best unit, one stream {best['stream']}, shards {best['shards']}; top 5 shared: {overlap}")

    binary = [f for f in FEATURES if f != "position_in_line"]
    scores = CorpusScores(model.vocab.chars, cfg.cell, [f"layers.{i}" for i in range(cfg.num_layers)], binary)
    scores.update(states["shards"], 0)
    for feature in binary:
        exact = {(r.layer, r.unit): r for r in find_cells(states["shards"], feature, top=None, controls=()).rows}
        counted = {(r.layer, r.unit): r.score for r in scores.table(feature, top=None).rows}
        gaps = {key: abs(row.score - counted[key]) for key, row in exact.items()}
        visible = [gap for key, gap in gaps.items() if exact[key].visible]
        top = sorted(exact.values(), key=lambda r: -r.score)[:20]
        print(f"  {feature}: AUC from 2,048-bin counts against the exact AUC, largest difference: units that "
              f"visibly switch {max(visible, default=0):.2e} ({len(visible)} units), the 20 best by exact AUC "
              f"{max(gaps[r.layer, r.unit] for r in top):.2e}, all {max(gaps.values()):.2e} ({len(gaps)} units; "
              "a unit pinned near +-1 varies within one bin)")  # fmt: skip

if __name__ == "__main__":
    main()
