"""A keystroke's cost in the live explorer against the text's length: full retrace against incremental (issue 26).

For each text length (a passage of War and Peace), it times the explorer's own ``/api/trace`` work
(``Explorer.trace_job``: the trace, the display codes, the top-5 rows, the loss) plus encoding the response as JSON,
which is the server's time for the request:

- **full**: the whole text traced, as without a session (and as every keystroke cost before sessions);
- **append**: one character typed at the end, in a session whose last response the page holds (the response carries
  the steps from the changed chunk on); repeat ``i`` types it after ``length + i`` characters, so that the repeats
  fall at different places of the last chunk (the median and the worst are printed);
- **middle**: one character replaced at the middle of the text, likewise.

Each is the median of ``--repeats`` requests, all in one process, run in turns so that load falls on all alike.
A column also gives a plain ``trace`` of the text in one chunk, the cost of the full retrace before the sessions' grid
of 32-step chunks (the full retrace is on that grid now, so that a resumed one agrees with it bit for bit).

Usage::

    python benchmarks/bench_keystroke.py [--model novel] [--lengths 500 1000 2000 5000] [--threads 1] [--chunks 16 32]

``--chunks`` compares grids side by side (the explorer's is ``EDIT_CHUNK``): a finer one makes an appended character
cheaper and a full retrace dearer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from lstm_interp import load_pretrained
from lstm_interp.serve.explorer import EDIT_CHUNK, Explorer
from lstm_interp.tracing import trace

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "war_and_peace.txt"


def served_ms(explorer: Explorer, body: dict) -> tuple[float, dict]:
    """The request's server time: the route's work and the JSON the response is sent as."""
    began = time.perf_counter()
    response = explorer.trace_job(body)()
    json.dumps(response)
    return (time.perf_counter() - began) * 1000, response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="novel")
    parser.add_argument("--lengths", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunks", type=int, nargs="+", default=[EDIT_CHUNK], help="grids to compare")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(args.model).eval()
    explorer = Explorer(model, [], [0.3], max(args.lengths) + args.repeats + 1)
    source = TEXT.read_text(encoding="utf-8")[200_000:]
    source = "".join(c for c in source if c in model.vocab)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"{torch.get_num_threads()} torch thread(s); model {args.model}; median of {args.repeats}; ms of server "
          "time per request")  # fmt: skip
    print(f"{'chunk':>5} {'chars':>6} {'full':>9} {'append':>9} {'worst':>7} {'middle':>9} {'full/append':>12} "
          f"{'steps retraced':>15} {'one-chunk trace':>16}")  # fmt: skip
    names = ["layers.1.cell", "log_probs"]
    rows: dict[tuple[int, int], dict[str, list[float]]] = {}
    starts: dict[tuple[int, int], list[int]] = {}
    for n in args.lengths:
        for i in range(args.repeats):  # the grids in turns, so that load falls on all alike
            for chunk in args.chunks:
                explorer.sessions.every = chunk
                times = rows.setdefault((chunk, n), {"full": [], "append": [], "middle": [], "plain": []})
                session = f"bench-{chunk:04d}-{n:08d}-{i:04d}"
                typed = source[: n + i]  # each repeat types at another place of the last chunk
                _, held = served_ms(explorer, {"text": typed, "layer": "layers.1", "quantity": "cell",
                                               "session": session})  # fmt: skip
                ms, _ = served_ms(explorer, {"text": typed, "layer": "layers.1", "quantity": "cell"})
                times["full"].append(ms)
                typed = typed + source[n + i]  # a character typed at the end
                body = {"text": typed, "layer": "layers.1", "quantity": "cell", "session": session,
                        "base": held["version"]}  # fmt: skip
                ms, held = served_ms(explorer, body)
                times["append"].append(ms)
                starts.setdefault((chunk, n), []).append(len(typed) - held["from"])
                middle = len(typed) // 2
                typed = typed[:middle] + ("e" if typed[middle] != "e" else "a") + typed[middle + 1 :]
                body = {"text": typed, "layer": "layers.1", "quantity": "cell", "session": session,
                        "base": held["version"]}  # fmt: skip
                ms, held = served_ms(explorer, body)
                times["middle"].append(ms)
                began = time.perf_counter()
                trace(model, typed, names_filter=names)
                times["plain"].append((time.perf_counter() - began) * 1000)
    for (chunk, n), times in rows.items():
        median = {key: statistics.median(values) for key, values in times.items()}
        retraced = f"{min(starts[chunk, n])}..{max(starts[chunk, n])}"
        print(f"{chunk:>5} {n:>6} {median['full']:>9.1f} {median['append']:>9.1f} {max(times['append']):>7.1f} "
              f"{median['middle']:>9.1f} {median['full'] / median['append']:>11.1f}x {retraced:>15} "
              f"{median['plain']:>16.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
