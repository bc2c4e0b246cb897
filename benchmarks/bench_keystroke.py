"""A keystroke's cost in the live explorer against the text's length: full retrace against incremental (issue 26).

For each text length (a passage of War and Peace), it times the explorer's own ``/api/trace`` work
(``Explorer.trace_job``: the trace, the display codes, the top-5 rows, the loss) plus encoding the response as JSON,
which is the server's time for the request:

- **full**: the whole text traced, as without a session (and as every keystroke cost before sessions);
- **append**: one character typed at the end, in a session whose last response the page holds (the response carries
  the steps from the changed chunk on);
- **middle**: one character replaced at the middle of the text, likewise.

Each is the median of ``--repeats`` requests, all in one process, run in turns so that load falls on all alike.
A column also gives a plain ``trace`` of the text in one chunk, the cost of the full retrace before the sessions' grid
of 32-step chunks (the full retrace is on that grid now, so that a resumed one agrees with it bit for bit).

Usage::

    python benchmarks/bench_keystroke.py [--model novel] [--lengths 500 1000 2000 5000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(args.model).eval()
    explorer = Explorer(model, [], [0.3], max(args.lengths) + args.repeats + 1)
    source = TEXT.read_text(encoding="utf-8")[200_000:]
    source = "".join(c for c in source if c in model.vocab)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s); model {args.model}; "
          f"chunk {EDIT_CHUNK} steps; median of {args.repeats}; ms of server time per request")  # fmt: skip
    print(f"{'chars':>6} {'full':>9} {'append':>9} {'middle':>9} {'full/append':>12} {'from (append)':>14} "
          f"{'one-chunk trace':>16}")  # fmt: skip
    names = ["layers.1.cell", "log_probs"]
    for n in args.lengths:
        text = source[:n]
        times: dict[str, list[float]] = {"full": [], "append": [], "middle": [], "plain": []}
        starts = []
        session = f"bench-{n:08d}"
        typed = text
        _, held = served_ms(explorer, {"text": typed, "layer": "layers.1", "quantity": "cell", "session": session})
        for i in range(args.repeats):
            ms, _ = served_ms(explorer, {"text": typed, "layer": "layers.1", "quantity": "cell"})
            times["full"].append(ms)
            typed = typed + source[n + i]
            body = {"text": typed, "layer": "layers.1", "quantity": "cell", "session": session, "base": held["version"]}
            ms, held = served_ms(explorer, body)
            times["append"].append(ms)
            starts.append(held["from"])
            middle = len(typed) // 2
            typed = typed[:middle] + ("e" if typed[middle] != "e" else "a") + typed[middle + 1 :]
            body = {"text": typed, "layer": "layers.1", "quantity": "cell", "session": session, "base": held["version"]}
            ms, held = served_ms(explorer, body)
            times["middle"].append(ms)
            began = time.perf_counter()
            trace(model, typed, names_filter=names)
            times["plain"].append((time.perf_counter() - began) * 1000)
        median = {key: statistics.median(values) for key, values in times.items()}
        print(f"{n:>6} {median['full']:>9.1f} {median['append']:>9.1f} {median['middle']:>9.1f} "
              f"{median['full'] / median['append']:>11.1f}x {min(starts):>6}..{max(starts):<7} "
              f"{median['plain']:>16.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
