"""Issue 21's bad-input cases, run against this checkout and an earlier commit: counts by outcome, side by side.

    python benchmarks/bad_input_cases.py                   # this checkout against b5252b5 (before issue 21)
    python benchmarks/bad_input_cases.py --before COMMIT   # against another commit
    python benchmarks/bad_input_cases.py --only after      # this checkout alone

Each case is what a careless user or an attacker does (a rerun into a folder of their own files, a hostile Host
header, a scale of 1e300, a lone surrogate, a nested JSON file, ...). Its outcome is one of:

- ``refused clearly``: an error (exception, exit status 2, HTTP 4xx) whose message names what was wrong;
- ``refused unclearly``: an error whose message does not (a raw IndexError, a codec message, "got ''");
- ``traceback``: a Python traceback on stderr, a RecursionError/MemoryError, or an HTTP 500;
- ``ran anyway``: bad input accepted: NaN results, a request served to a foreign Host, a gate clamped outside its
  range, a request that held the model's thread past the server's deadline (10 s);
- ``hang``: still running after the case's time limit;
- ``data loss``: a file the project did not write is gone.

Every case runs in a worker process whose ``PYTHONPATH`` is the checkout under test (a ``git worktree`` for the
earlier commit); the command-line cases run ``lstm-interp`` in further subprocesses of it. The worker prints one JSON
line per case; this script prints each case's outcome before and after, and the counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_BEFORE = "b5252b5"  # the last commit before issue 21's first fix
OUTCOMES = ("handled", "refused unclearly", "traceback", "ran anyway", "hang", "data loss")


def run_worker(root: Path, timeout: float) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, str(HERE / "_bad_input_worker.py"), "--root", str(root)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=root)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 and not rows:
        raise RuntimeError(f"the worker for {root} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help=f"the earlier commit (default {DEFAULT_BEFORE})")
    parser.add_argument("--only", choices=["before", "after"], default=None, help="run one side only")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds for each side's whole run")
    args = parser.parse_args()

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bad-input-before-") as scratch:
        if args.only != "after":
            tree = Path(scratch) / "tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before],
                           check=True, capture_output=True)  # fmt: skip
            try:
                results["before"] = run_worker(tree, args.timeout)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        if args.only != "before":
            results["after"] = run_worker(ROOT, args.timeout)

    sides = list(results)
    by_case: dict[str, dict[str, dict]] = collections.defaultdict(dict)
    for side, rows in results.items():
        for row in rows:
            by_case[f"{row['group']}: {row['case']}"][side] = row
    width = max(len(name) for name in by_case)
    print(f"{'case':<{width}}  " + "  ".join(f"{side:<18}" for side in sides))
    for name, row in by_case.items():
        cells = [row.get(side, {}).get("outcome", "-") for side in sides]
        print(f"{name:<{width}}  " + "  ".join(f"{cell:<18}" for cell in cells))
    print()
    print(f"{'outcome':<18}  " + "  ".join(f"{side:>6}" for side in sides))
    for outcome in OUTCOMES:
        counts = [sum(r["outcome"] == outcome for r in results[side]) for side in sides]
        print(f"{outcome:<18}  " + "  ".join(f"{count:>6}" for count in counts))
    print(f"{'cases':<18}  " + "  ".join(f"{len(results[side]):>6}" for side in sides))
    if "after" in results:
        for row in results["after"]:
            if row["outcome"] != "handled":
                print(f"\nafter, not refused clearly: {row['group']}: {row['case']}: {row['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
