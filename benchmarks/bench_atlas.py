"""Time the unit atlas's streaming pass against a plain trace of the same text, then its fixed-size sample work.

Usage::

    python benchmarks/bench_atlas.py [--chars 1000000] [--model novel] [--text /work/shared/data/war_and_peace.txt]
                                     [--segment-chars 16384] [--feature-chars 20000] [--ablation-chars 1000]
                                     [--threads 1] [--out DIR]

Side by side, in one process, on the same text (the first ``--chars`` characters of War and Peace), the two runs
in lockstep (a segment of one, then the same segment of the other), so that the shared machine's changing load
falls on both alike:

1. **trace**: ``trace_segments`` over the text with the names the atlas reads (every layer's cell state, forget and
   input gates), nothing else done with the segments;
2. **atlas pass**: the same ``trace_segments`` with ``UnitAtlas.update`` on every segment (top and bottom context
   heaps, histograms, saturation and gate counts, the feature sample kept); its own time in ``update`` is summed
   too, so the split of the pass into tracing and the atlas's work is printed beside the ratio;
3. **sample work**, reported apart because it does not grow with the corpus: ``finish`` (features scored on the
   first ``--feature-chars`` characters, every unit zeroed in turn over the first ``--ablation-chars``, the cards),
   and the folder with its pages (``--out``, default a temporary folder).

The target is atlas pass / trace <= 1.5. One torch thread by default: on the shared 2-core machine a second one
mostly waits for the first. The peak RSS of the process is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from lstm_interp import load_pretrained
from lstm_interp.analysis.unit_atlas import UnitAtlas
from lstm_interp.report.atlas_pages import write_atlas_folder
from lstm_interp.tracing import trace_segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--model", default="novel")
    parser.add_argument("--text", default="/work/shared/data/war_and_peace.txt")
    parser.add_argument("--segment-chars", type=int, default=16_384)
    parser.add_argument("--feature-chars", type=int, default=20_000)
    parser.add_argument("--ablation-chars", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the atlas folder here (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    model = load_pretrained(args.model)
    cfg = model.config
    text = Path(args.text).read_text(encoding="utf-8")[: args.chars]
    print(f"model: {args.model} ({cfg.num_layers} x {cfg.hidden_size} {cfg.cell}); text: {len(text):,} characters of "
          f"{Path(args.text).name}; segments of {args.segment_chars:,}")  # fmt: skip
    layers = [f"layers.{i}" for i in range(cfg.num_layers)]
    atlas = UnitAtlas(cfg.cell, layers, cfg.hidden_size, feature_chars=args.feature_chars,
                      ablation_chars=args.ablation_chars)  # fmt: skip
    names = atlas.names

    # The two runs go in lockstep, one segment of each in turn, so that a change in the shared machine's load
    # (other processes come and go over the minutes a run takes) falls on both alike.
    plain = trace_segments(model, text, args.segment_chars, names_filter=names)
    passing = trace_segments(model, text, args.segment_chars, names_filter=names)
    trace_s = pass_s = update_s = 0.0
    loads = []
    while True:
        began = time.perf_counter()
        if next(plain, None) is None:
            break
        middle = time.perf_counter()
        start, segment = next(passing)
        started = time.perf_counter()
        atlas.update(segment, start)
        ended = time.perf_counter()
        trace_s, pass_s, update_s = trace_s + middle - began, pass_s + ended - middle, update_s + ended - started
        loads.append(os.getloadavg()[0])
    print(f"load average during the runs: {min(loads):.2f} to {max(loads):.2f}")
    print(f"trace (trace_segments, names {names}):")
    print(f"  {trace_s:9.1f} s  ({len(text) / trace_s:,.0f} chars/s)")
    print("atlas pass (the same trace_segments + UnitAtlas.update on every segment), segment by segment in turn:")
    print(f"  {pass_s:9.1f} s  ({len(text) / pass_s:,.0f} chars/s)")
    print(f"  of which UnitAtlas.update {update_s:.1f} s ({update_s / (pass_s - update_s):.2f} x its own tracing)")
    ratio = pass_s / trace_s
    print(f"atlas pass / trace = {ratio:.2f}   (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")

    began = time.perf_counter()
    atlas.finish(model, log=lambda line: None)
    seconds = atlas.meta["seconds"]
    cards_s = time.perf_counter() - began - seconds["features"] - seconds["ablation"]
    print("sample work (fixed size, not growing with the corpus):")
    print(f"  features on the first {args.feature_chars:,} characters: {seconds['features']:7.1f} s "
          f"({len(atlas.meta['features']['scored'])} features scored, every unit)")  # fmt: skip
    units = len(layers) * cfg.hidden_size
    print(f"  ablations over the first {args.ablation_chars:,} characters: {seconds['ablation']:7.1f} s "
          f"({units} units, {seconds['ablation'] / units * 1000:.0f} ms each)")  # fmt: skip
    print(f"  readout and cards: {cards_s:7.1f} s")
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "atlas"
        began = time.perf_counter()
        write_atlas_folder(atlas, out, overwrite=True)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"  folder ({units} unit pages): {time.perf_counter() - began:7.1f} s, {size / 1e6:.1f} MB "
              f"(atlas.json {(out / 'atlas.json').stat().st_size / 1e6:.1f} MB)")  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
