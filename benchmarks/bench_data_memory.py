"""Peak memory of preparing a large corpus: ``EncodedCorpus`` (streamed into a memmap) against the naive way.

Writes a synthetic UTF-8 text of ``--mb`` MiB (words with accented letters, quotes and newlines) to a temporary
folder, then prepares it twice, each time in a fresh child process so that the peaks do not mix:

- ``encoded``: ``EncodedCorpus.prepare(files=path, cache_dir=<fresh folder>)``;
- ``naive``: ``text = open(path).read()`` then ``torch.tensor([stoi[c] for c in text])`` (``--naive list``, the
  char-rnn way), or ``vocab.encode_array(open(path).read())`` (``--naive numpy``: no per-character Python loop,
  but still the whole text and several whole-length arrays at once).

Each child reports its peak resident set size (``VmHWM`` from ``/proc/self/status``, else ``ru_maxrss``), its
resident size right after the imports (torch alone is a few hundred MB) and its wall time. The requirement is a
peak below 1 GB for ``encoded`` at 200 MB.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_data_memory.py --mb 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIMIT_BYTES = 2**30
REPO = Path(__file__).resolve().parents[1]


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write about ``megabytes`` MiB of word-like UTF-8 text to ``path``; return its size in bytes."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz" + "ETAOINSHR" + "éèàçüöñ"))
    weights = np.r_[np.linspace(12, 1, 26), np.full(9, 0.8), np.full(7, 0.3)]
    weights /= weights.sum()
    # A lexicon of 5000 words, drawn again for each block: realistic enough for an encoder that does not care.
    lexicon = ["".join(rng.choice(letters, size=rng.integers(1, 11), p=weights)) for _ in range(5000)]
    lexicon += ['"', "'", ",", ".", "!", "?", "—", "“", "”"]
    target = int(megabytes * 2**20)
    written = 0
    with path.open("wb") as handle:
        while written < target:
            words = rng.choice(lexicon, size=200_000)
            separators = rng.choice([" ", "\n", ", "], size=200_000, p=[0.88, 0.08, 0.04])
            block = "".join(np.char.add(words, separators).tolist()).encode("utf-8")
            if written + len(block) > target:  # cut the last block at a character boundary, not inside one
                block = block[: target - written].decode("utf-8", errors="ignore").encode("utf-8")
            written += handle.write(block) or 1  # `or 1`: a cut that leaves nothing still ends the loop
    return path.stat().st_size


def _memory() -> tuple[int, int]:
    """(current, peak) resident set size of this process, in bytes."""
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return peak, peak


def child(mode: str, path: str, cache: str, naive: str) -> None:
    """Prepare the corpus one way and print one JSON line of measurements."""
    import torch

    from lstm_interp.data import EncodedCorpus
    from lstm_interp.vocab import CharVocab

    after_imports, _ = _memory()
    start = time.perf_counter()
    if mode == "encoded":
        corpus = EncodedCorpus.prepare(files=path, cache_dir=cache)
        length, vocab_size = len(corpus), len(corpus.vocab)
    elif naive == "list":
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        stoi = {c: i for i, c in enumerate(sorted(set(text)))}
        ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
        length, vocab_size = len(ids), len(stoi)
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        vocab = CharVocab.from_text(text)
        ids = torch.from_numpy(vocab.encode_array(text))
        length, vocab_size = len(ids), len(vocab)
    seconds = time.perf_counter() - start
    _, peak = _memory()
    print(json.dumps({"peak": peak, "after_imports": after_imports, "seconds": seconds, "length": length,
                      "vocab_size": vocab_size}))  # fmt: skip


def run_child(mode: str, path: Path, cache: Path, naive: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, __file__, "--child", mode, str(path), str(cache), "--naive", naive]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the synthetic corpus in MiB")
    parser.add_argument("--naive", choices=["list", "numpy"], default="list", help="the naive baseline to run")
    parser.add_argument("--skip-naive", action="store_true", help="measure EncodedCorpus only")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "PATH", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, naive=args.naive)
        return

    mib = 2**20
    with tempfile.TemporaryDirectory(prefix="bench_data_memory_") as folder:
        path = Path(folder) / "corpus.txt"
        start = time.perf_counter()
        size = write_corpus(path, args.mb)
        print(f"corpus: {size / mib:.1f} MiB of UTF-8 ({path.name}), written in {time.perf_counter() - start:.1f} s")
        results = {"encoded": run_child("encoded", path, Path(folder) / "cache", args.naive)}
        if not args.skip_naive:
            results["naive"] = run_child("naive", path, Path(folder) / "unused", args.naive)

    labels = {"encoded": "EncodedCorpus.prepare (streamed, memmap)"}
    labels["naive"] = {"list": "naive: read() + torch.tensor([stoi[c] ...])", "numpy": "naive: read() + encode_array"}[
        args.naive
    ]
    print(f"characters: {results['encoded']['length']:,}, vocabulary: {results['encoded']['vocab_size']}")
    print(f"{'method':<46} {'peak RSS':>10} {'after imports':>14} {'time':>8}")
    for name, result in results.items():
        print(
            f"{labels[name]:<46} {result['peak'] / mib:>6.0f} MiB {result['after_imports'] / mib:>10.0f} MiB "
            f"{result['seconds']:>7.1f}s"
        )
    encoded_peak = results["encoded"]["peak"]
    if "naive" in results:
        print(f"naive / encoded peak RSS: {results['naive']['peak'] / encoded_peak:.1f}x")
    verdict = "PASS" if encoded_peak < LIMIT_BYTES else "FAIL"
    print(f"{verdict}: EncodedCorpus peak {encoded_peak / mib:.0f} MiB against a limit of {LIMIT_BYTES / mib:.0f} MiB")
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    main()
