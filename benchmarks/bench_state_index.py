"""Time ``StateIndex.build`` against ``trace`` over the same text, the index's size, and ``match`` on a quoted span.

Usage::

    python benchmarks/bench_state_index.py [--chars 1000000] [--model model_cards/novel]
                                           [--text /work/shared/data/war_and_peace.txt] [--repeats 7] [--no-trace]
                                           [--threads 1] [--index DIR [--reuse]]

The model is the pretrained novel model (a 2 x 512 LSTM); the text the first ``--chars`` characters of War and
Peace. ``trace`` keeps the same names the index holds (every layer's cell state) in memory, 4 bytes per unit per
character (4 GiB at 1,000,000 characters; ``--no-trace`` skips it); the build streams the text in segments and
keeps one bit. The selection is ``select_cells`` over the first quoted passage of 10 to 80 characters (in the first
20,000) that selects at least one cell at the index's threshold; ``match`` is timed ``--repeats`` times (median,
top=50). One torch thread by default: on a shared 2-core machine a second one mostly waits for the first, and makes both
timings erratic (2-3x between runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lstm_interp import load_pretrained, trace
from lstm_interp.analysis.select_cells import select_cells
from lstm_interp.analysis.state_index import StateIndex


def quoted_selection(model, text: str, names: list[str], threshold: float) -> tuple[tuple[int, int], list]:
    """The first short quoted passage (10 to 80 characters inside the quotes) that selects cells, traced from the
    start of the text as the index was."""
    head = text[:20_000]
    tr = trace(model, head, names_filter=names)
    quotes = [i for i, c in enumerate(head) if c == '"']
    for start, end in zip(quotes[0::2], quotes[1::2], strict=False):
        if 10 <= end - start - 1 <= 80:
            cells = select_cells(tr, (start + 1, end), threshold=threshold)  # inside the quotes, off at the quote
            if cells:
                return (start + 1, end), cells
    raise SystemExit("no quoted span in the first 20,000 characters selects a cell; try another text")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--model", default="/work/main/model_cards/novel")
    parser.add_argument("--text", default="/work/shared/data/war_and_peace.txt")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-trace", action="store_true", help="skip the in-memory trace (4 bytes/unit/char)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a busy machine's other core)")
    parser.add_argument("--index", type=Path, help="build the index here and keep it (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="open the index at --index instead of building it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    model = load_pretrained(args.model)
    text = Path(args.text).read_text(encoding="utf-8")[: args.chars]
    names = [f"layers.{i}.cell" for i in range(model.config.num_layers)]
    H = model.config.hidden_size
    print(f"model: {args.model} ({model.config.num_layers} x {H} {model.config.cell}), text: {len(text):,} characters")

    trace_s = None
    if not args.no_trace:
        began = time.perf_counter()
        whole = trace(model, text, names_filter=names)
        trace_s = time.perf_counter() - began
        held = sum(t.numel() * t.element_size() for t in whole.values())
        del whole
        print(f"trace (names {names}, in memory):   {trace_s:8.1f} s  ({len(text) / trace_s:,.0f} chars/s, {held:,} B)")

    with tempfile.TemporaryDirectory(prefix="bench_state_index.") as tmp:
        folder = args.index or Path(tmp) / "index"
        if args.reuse:
            index = StateIndex.open(folder)
            print(f"StateIndex.open {str(folder)!r}: {index}")
        else:
            began = time.perf_counter()
            index = StateIndex.build(model, text, folder)
            build_s = time.perf_counter() - began
            print(f"StateIndex.build (streamed, to disk): {build_s:8.1f} s  ({len(text) / build_s:,.0f} chars/s)")
            if trace_s is not None:
                print(f"build / trace time: {build_s / trace_s:.2f}x")

        T = index.num_steps
        for name in index.names:
            size = (folder / "bits" / f"{name}.bin").stat().st_size
            print(f"  {name}: {size:,} B = {size / (T * H / 8):.4f} x T*H/8 ({T * H / 8:,.0f} B)")
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        headers = total - T - len(index.names) * H * -(-T // 8)
        print(f"  folder: {total:,} B (tokens.bin {T:,} B, headers {headers:,} B)")

        span, cells = quoted_selection(model, text, names, index.threshold)
        print(f"selection: select_cells over {span} ({text[span[0] : span[1]]!r}): {len(cells)} cells {cells[:8]}")
        times, matches = [], []
        for _ in range(args.repeats):
            began = time.perf_counter()
            matches = index.match(cells, top=50)
            times.append(time.perf_counter() - began)
        print(f"match(top=50): median {statistics.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms")
        for m in matches[:5]:
            before, inside, after = index.passage(m, context=20)
            print(f"  {m.start:>8}-{m.end:<8} {m.scores}  {before!r} [{inside!r}] {after!r}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
