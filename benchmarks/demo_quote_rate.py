"""How often does the demo's recipe grow a quote cell? Seeds x precisions x recipes, each a full ``run_demo``.

Each run is scored on held-out prose: ``--held-out`` characters of the book's last 10% (never trained on, from a
paragraph start). The best ``inside_quotes`` unit is the one :func:`find_cells` ranks first on the cell state; a run
"has a quote cell" when that unit's AUC is at least 0.95 and it visibly switches (``CellScore.visible``).

Runs go to ``--workers`` processes at once, one torch thread each (the demo on a 2-core machine with one other job
gets the same). One JSON line per run is appended to ``--out`` as it finishes, so a killed sweep keeps what it did
and a rerun skips the runs already there.

    python benchmarks/demo_quote_rate.py --recipes current stateful_dialogue --seeds 0 1 2 3 4 5 \\
        --precisions 32-true bf16-mixed --out runs/demo_quote_rate.jsonl
    python benchmarks/demo_quote_rate.py --summarize runs/demo_quote_rate.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# The recipes: keyword arguments of run_demo that differ from its defaults. "current" is the demo as it ships.
RECIPES: dict[str, dict[str, Any]] = {
    "current": {},
    # The demo up to issue 20: shuffled windows, 2x128, batches of 32, at most 2,500 steps or 4 minutes.
    "before": {
        "stateful": False, "train_on": "book", "hidden_size": 128, "batch_size": 32, "lr": 6e-3, "max_steps": 2500,
        "max_minutes": 4.0,
    },
    "stateful": {"stateful": True, "train_on": "book"},
    "dialogue": {"stateful": False, "train_on": "dialogue"},
    "stateful_dialogue": {"stateful": True, "train_on": "dialogue"},
    "stateful_h256": {"stateful": True, "train_on": "book", "hidden_size": 256},
    "stateful_h256_b16": {"stateful": True, "train_on": "book", "hidden_size": 256, "batch_size": 16},  # = current
    "stateful_lr3": {"stateful": True, "train_on": "book", "lr": 3e-3},
    "stateful_long": {"stateful": True, "train_on": "book", "max_steps": 4000},
    "stateful_seq200": {"stateful": True, "train_on": "book", "batch_size": 16, "seq_len": 200, "max_steps": 4000},
}
QUOTE_AUC = 0.95


def held_out_text(length: int) -> str:
    """``length`` characters of the book's last 10%, from the first paragraph start there."""
    from lstm_interp.data import CharDataModule

    book = CharDataModule(corpus="war_and_peace")
    book.prepare_data()
    text = book.corpus.text()
    start = text.index("\n\n", int(0.9 * len(text))) + 2
    return text[start : start + length]


def one_run(
    recipe: str, seed: int, precision: str, held_out: int, minutes: float | None, keep: Path | None = None
) -> dict[str, Any]:
    import torch

    from lstm_interp import find_cells, load_pretrained, trace
    from lstm_interp.demo import run_demo

    torch.set_num_threads(1)
    options = dict(RECIPES[recipe])
    if minutes is not None:
        options["max_minutes"] = minutes
    with tempfile.TemporaryDirectory(prefix="demo_rate_") as out:
        start = time.perf_counter()
        result = run_demo(out, seed=seed, precision=precision, threads=1, progress_bar=False, echo=None, **options)
        wall = time.perf_counter() - start
        model = load_pretrained(result.model_dir)
        text = held_out_text(held_out)
        best = find_cells(trace(model, text), "inside_quotes", top=1)[0]
        if keep is not None:  # the model, for a later look (a few MB each)
            shutil.copytree(result.model_dir, keep / f"{recipe}_{seed}_{precision}", dirs_exist_ok=True)
    return {
        "recipe": recipe,
        "seed": seed,
        "precision": precision,
        "steps": result.steps,
        "train_s": round(result.train_seconds, 1),
        "wall_s": round(wall, 1),
        "val_loss": round(result.val_loss, 4),
        "held_out_chars": len(text),
        "best": best.to_dict(),
        "quote_cell": bool(best.score >= QUOTE_AUC and best.visible and best.beats_controls),
        "load_avg": os.getloadavg()[0],
    }


def summarize(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["recipe"], row["precision"]].append(row)
    print(f"{'recipe':<18} {'precision':<11} {'quote cells':>11}  {'AUC per seed':<48} steps     val loss")
    for (recipe, precision), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        hits = sum(r["quote_cell"] for r in runs)
        aucs = " ".join(f"{r['seed']}:{r['best']['score']:.3f}" for r in runs)
        steps = f"{min(r['steps'] for r in runs)}-{max(r['steps'] for r in runs)}"
        loss = sum(r["val_loss"] for r in runs) / len(runs)
        print(f"{recipe:<18} {precision:<11} {hits:>5} of {len(runs):<3}  {aucs:<48} {steps:<9} {loss:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["current"], choices=sorted(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--held-out", type=int, default=50_000, help="held-out characters scored")
    parser.add_argument("--minutes", type=float, default=None, help="override the demo's time limit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/demo_quote_rate.jsonl"))
    parser.add_argument("--summarize", type=Path, default=None, help="print the table of a results file and exit")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        done = {(r["recipe"], r["seed"], r["precision"]) for r in map(json.loads, args.out.read_text().splitlines())}
    # Recipes interleaved (seed, precision, then recipe): with two workers, the runs compared run side by side,
    # under the same load, since the time limit makes the steps a run gets depend on the machine's other work.
    jobs = [(r, s, p) for s, p, r in itertools.product(args.seeds, args.precisions, args.recipes)]
    jobs = [job for job in jobs if job not in done]
    with ProcessPoolExecutor(args.workers) as pool:
        keep = args.out.parent / "demo_models"
        futures = [pool.submit(one_run, r, s, p, args.held_out, args.minutes, keep) for r, s, p in jobs]
        for future in futures:
            row = future.result()
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    summarize(args.out)


if __name__ == "__main__":
    main()
