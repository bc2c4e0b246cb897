"""Character n-gram baselines (the paper's Section 4.3): test loss, time and peak memory for n = 1 … 20.

Encodes ``--file`` with ``EncodedCorpus``, cuts it with the project's contiguous split (``--split``, by default
0.9/0.05/0.05: train is the first 90 %, test the last 5 %), fits an :class:`~lstm_interp.ngram.NGramModel`
(interpolated modified Kneser–Ney) on the train part for each order and scores the test part. The first test
characters get their context from the n-1 characters just before the test part (the end of the validation part),
so every test character is scored by the full n-gram model.

The vocabulary the models spread probability over is the character set of the train and test parts (and of those
context characters), as the paper's setting implies, not of the whole file; ids are renumbered to it.

Each order runs in a fresh child process, so that its peak resident set size (``VmHWM`` from
``/proc/self/status``) is its own; ``after imports`` is the child's resident size before fitting (importing
``lstm_interp`` imports torch, a few hundred MB). Run from the repository root, with ``nice`` on a shared machine::

    nice -n 10 python benchmarks/bench_ngram.py --file /work/shared/data/war_and_peace.txt --max-order 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ORDERS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
# Karpathy, Johnson & Fei-Fei (2015), Section 4.3: test loss of their 20-gram models, nats per character.
PAPER_20GRAM = {"war_and_peace": 1.195, "linux_kernel": 0.889}
MEMORY_LIMIT = 4 * 2**30


def _memory() -> tuple[int, int]:
    """(current, peak) resident set size of this process, in bytes."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def load_split(path: str, split: tuple[float, ...], cache_dir: str, context_length: int) -> dict[str, object]:
    """Train and test ids renumbered to the train+test character set, and the context before the test part."""
    from lstm_interp.data import EncodedCorpus

    corpus = EncodedCorpus.prepare(files=path, cache_dir=cache_dir)
    parts = corpus.split(split)
    train, test = parts[0], parts[-1]
    test_start = len(corpus) - len(test)
    context = np.asarray(corpus.ids[max(0, test_start - context_length) : test_start])
    used = np.union1d(np.union1d(np.unique(train), np.unique(test)), np.unique(context))
    renumber = np.full(len(corpus.vocab), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    dtype = np.uint8 if len(used) <= 256 else np.int32
    return {
        "train": renumber[train].astype(dtype),
        "test": renumber[test].astype(dtype),
        "context": renumber[context].astype(dtype),
        "vocab_size": len(used),
        "file_vocab_size": len(corpus.vocab),
        "length": len(corpus),
    }


def child(args: argparse.Namespace) -> None:
    """Fit and score one order; print one JSON line of measurements."""
    from lstm_interp.ngram import NGramModel

    data = load_split(args.file, args.split, args.cache_dir, args.order - 1)
    after_imports, _ = _memory()
    start = time.perf_counter()
    model = NGramModel.fit(data["train"], args.order, data["vocab_size"])
    fitted = time.perf_counter()
    nats = model.score(data["test"], data["context"])
    scored = time.perf_counter()
    _, peak = _memory()
    row = {
        "order": args.order,
        "nats": nats,
        "bits": nats / math.log(2),
        "fit_s": fitted - start,
        "score_s": scored - fitted,
        "peak": peak,
        "after_imports": after_imports,
        "model_bytes": model.nbytes,
        "top_ngrams": model.num_ngrams[-1],
        "estimated": bool(model.discounts_estimated[-1]),
    }
    print(json.dumps(row))


def run_order(args: argparse.Namespace, order: int) -> dict[str, float]:
    """Run one order in a child process and return its measurements."""
    command = [sys.executable, __file__, "--child", "--file", args.file, "--order", str(order)]
    command += ["--split", ",".join(str(f) for f in args.split), "--cache-dir", args.cache_dir]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"order {order} failed (exit {result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every order and print the table; return 1 if an order passed the memory limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, help="the corpus, a UTF-8 text file")
    parser.add_argument("--max-order", type=int, default=20, help="the largest n (default 20)")
    parser.add_argument("--orders", default=None, help=f"comma-separated orders (default {DEFAULT_ORDERS} to max)")
    parser.add_argument("--split", default="0.9,0.05,0.05", help="train,val,test fractions (default 0.9,0.05,0.05)")
    parser.add_argument("--cache-dir", default=None, help="EncodedCorpus cache folder (default: a temporary one)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--order", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.split = tuple(float(f) for f in args.split.split(","))
    if args.child:
        child(args)
        return 0

    if args.orders:
        orders = sorted({int(o) for o in args.orders.split(",")})
    else:
        orders = [o for o in DEFAULT_ORDERS if o <= args.max_order]
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = args.cache_dir or tmp
        data = load_split(args.file, args.split, args.cache_dir, 0)
        name = Path(args.file).stem
        print(f"corpus: {args.file} ({data['length']:,} characters, {data['file_vocab_size']} distinct)")
        print(
            f"split {args.split}: train {len(data['train']):,}, test {len(data['test']):,} characters; "
            f"vocabulary (train+test characters) {data['vocab_size']}"
        )
        print(
            f"{'n':>3} {'nats/char':>10} {'bits/char':>10} {'fit':>8} {'score':>7} {'peak RSS':>10} "
            f"{'after imports':>14} {'model':>9} {'distinct n-grams':>17}"
        )
        worst = 0
        for order in orders:
            row = run_order(args, order)
            worst = max(worst, row["peak"])
            fallback = "" if row["estimated"] else " (fallback discounts)"
            print(
                f"{order:>3} {row['nats']:>10.4f} {row['bits']:>10.4f} {row['fit_s']:>7.1f}s {row['score_s']:>6.1f}s "
                f"{row['peak'] / 2**20:>6.0f} MiB {row['after_imports'] / 2**20:>10.0f} MiB "
                f"{row['model_bytes'] / 2**20:>5.1f} MiB {row['top_ngrams']:>17,}{fallback}",
                flush=True,
            )
    if name in PAPER_20GRAM:
        print(f"paper (Karpathy et al. 2015), 20-gram on its {name} split: {PAPER_20GRAM[name]} nats/char")
    verdict = "PASS" if worst <= MEMORY_LIMIT else "FAIL"
    print(f"{verdict}: largest peak RSS {worst / 2**20:.0f} MiB against a limit of {MEMORY_LIMIT / 2**20:.0f} MiB")
    return 0 if worst <= MEMORY_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
