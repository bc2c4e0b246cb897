"""The explorer's start-up with a large corpus, cold (empty index cache) and cached (issue 26).

It starts the real ``lstm-interp serve MODEL --port 0 --corpus FILE`` twice in a child process, with an index cache
of its own (``LSTM_INTERP_CACHE``): first with the cache empty, then again over the cache the first run filled. For
each it measures, from the moment the process is started:

- **serving**: the "Serving ... at URL" line;
- **usable**: the first ``/api/trace`` of a short text answered (the page can trace what is typed);
- **opened**: ``/api/initial`` answered, asked at the same time (the page shows its opening passage and unit);
- **indexed**: ``/api/info``'s ``indexing`` null: select & match in the corpus work (polled every 0.25 s, so to
  within a quarter second), with the progress seen on the way.

Usage::

    python benchmarks/bench_serve_startup.py [--model model_cards/novel] [--corpus-chars 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "data" / "war_and_peace.txt"


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def info(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/info", timeout=30) as response:
        return json.loads(response.read())


def start(model: str, corpus: Path, cache: Path) -> dict[str, object]:
    env = {**os.environ, "LSTM_INTERP_CACHE": str(cache), "PYTHONWARNINGS": "ignore"}
    entry = "import sys; from lstm_interp.cli.main import main; sys.exit(main())"
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", entry, "serve", model, "--port", "0", "--corpus", str(corpus)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        serving = time.perf_counter() - began
        url = line.split(" at ", 1)[1].split()[0].rstrip("/")
        opened: list[float] = []

        def ask_opening() -> None:
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/initial", timeout=120) as response:
                        response.read()
                    break
                except OSError:
                    time.sleep(0.05)
            opened.append(time.perf_counter() - began)

        asking = threading.Thread(target=ask_opening)
        asking.start()
        while True:
            try:
                post(f"{url}/api/trace", {"text": "Well, Prince, so Genoa and Lucca"})
                break
            except OSError:
                time.sleep(0.05)
        usable = time.perf_counter() - began
        asking.join()
        seen = []
        while (progress := info(url)["indexing"]) is not None:
            seen.append(round(progress))
            time.sleep(0.25)
        indexed = time.perf_counter() - began
        steps = info(url)["corpus_steps"]
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {"serving": serving, "usable": usable, "opened": opened[0], "indexed": indexed, "steps": steps,
            "progress": sorted(set(seen))[:3] + sorted(set(seen))[-2:] if seen else []}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "model_cards" / "novel"))
    parser.add_argument("--corpus-chars", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.txt"
        corpus.write_text(TEXT.read_text(encoding="utf-8")[: args.corpus_chars], encoding="utf-8")
        cache = Path(folder) / "cache"
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; model "
              f"{Path(args.model).name}; corpus: the "
              f"first {args.corpus_chars:,} characters of War and Peace ({corpus.stat().st_size:,} bytes)")  # fmt: skip
        for label in ("cold (empty cache)", "cached"):
            r = start(args.model, corpus, cache)
            print(f"{label:>19}: serving {r['serving']:6.2f} s, usable {r['usable']:6.2f} s, opened "
                  f"{r['opened']:6.2f} s, corpus indexed {r['indexed']:7.2f} s ({r['steps']} steps; progress seen "
                  f"{r['progress']})", flush=True)  # fmt: skip
        entries = list((cache / "indexes").iterdir())
        print(f"cache: {len(entries)} entry, {sum(f.stat().st_size for f in entries[0].rglob('*') if f.is_file()):,} "
              "bytes")  # fmt: skip


if __name__ == "__main__":
    main()
