"""The live explorer's speed: retracing 500 typed characters, on the server and in the page, against ``trace``.

Usage::

    python benchmarks/bench_serve.py [--model model_cards/novel] [--text /work/shared/data/war_and_peace.txt]
                                     [--corpus-chars 100000] [--edits 30] [--screenshot docs/explorer.png]

It starts the real ``lstm-interp serve MODEL --port 0 --corpus FILE`` in a child process (the corpus the first
``--corpus-chars`` characters of the text; a match over a 1,000,000-character index is
``benchmarks/bench_state_index.py``'s) and then, side by side in one run, alternating so the two never share the
cores:

- ``/api/trace`` of a 500-character passage, edited one character at a time as typing does (``--edits`` texts):
  the server's own time (``server_ms``: checks, tracing, display codes, top-5 and loss), the HTTP round trip, and
  ``trace`` of the same text in this process (the same names) for the ratio;
- the same with one intervention (a clamp of the quote cell), which also runs the plain model for the page's
  "without interventions" rows;
- in headless Chromium (``tests/browser.py``), typing edits into the page: from the request to the recoloured text
  (``lastTraceMs``: request, server, decoding, DOM rebuild, recolouring) and the recolouring alone (a unit change);
- ``/api/initial``: how long after start-up the page's opening passage and unit are ready (waited for before any
  timing, so that the first timed request does not queue behind it);
- ``/api/features`` and ``/api/match`` (the selection of a quoted span) round trips;
- in this process, the same trace work on the main thread (which loaded the model) and on a second thread: why the
  server loads, indexes and runs the model on one thread (``create_app``'s ``executor``).

``--screenshot`` also saves the page as the README shows it: the quote cell over a passage, a quotation brushed
from its opening quote, selected (layers.1) and matched in the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

from lstm_interp import load_pretrained, trace

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "war_and_peace.txt"
QUOTE_CELL = ("layers.1", 254)  # the novel model's quote cell (model_cards/novel)
# A pause before each timed call: OpenMP's threads spin for a while after a parallel region, so a call made at once
# after the other process's would share the 2 cores with them (measured: 147 ms on the server without the pause,
# against 96 ms for the same work in-process).
SETTLE_S = 0.5


def post(url: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The decoded response and the round trip in ms."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        data = json.loads(response.read())
    return data, (time.perf_counter() - started) * 1000


def passage(text: str, length: int = 500) -> str:
    """The first ``length`` characters starting at a paragraph that holds a quotation."""
    start = text.index('\n\n"', 20_000) + 2
    return text[start : start + length]


def edits(base: str, n: int) -> list[str]:
    """``n`` texts of ``base``'s length, each one typed character away from the previous."""
    texts, chars = [], list(base)
    for i in range(n):
        at = len(chars) - 1 - (i * 7) % 50
        chars[at] = "e" if chars[at] != "e" else "a"
        texts.append("".join(chars))
    return texts


def get(url: str) -> tuple[dict[str, Any], float]:
    """The decoded response of a GET and its round trip in ms."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        data = json.loads(response.read())
    return data, (time.perf_counter() - started) * 1000


def start_server(model: str, corpus: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "lstm_interp.cli.main", "serve", model, "--port", "0", "--corpus", str(corpus)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    line = process.stdout.readline()
    if " at " not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    url = line.split(" at ", 1)[1].split()[0].rstrip("/")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/info", timeout=5):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("the server did not answer /api/info")


def median(values: list[float]) -> float:
    return statistics.median(values)


def api_times(url: str, model: Any, texts: list[str]) -> None:
    name = f"{QUOTE_CELL[0]}.cell"
    server, trip, library = [], [], []
    for text in texts:
        time.sleep(SETTLE_S)
        data, ms = post(f"{url}/api/trace", {"text": text, "layer": QUOTE_CELL[0], "quantity": "cell"})
        server.append(data["server_ms"])
        trip.append(ms)
        time.sleep(SETTLE_S)
        started = time.perf_counter()
        with torch.inference_mode():
            trace(model, text, names_filter=[name, "log_probs"])
        library.append((time.perf_counter() - started) * 1000)
    print(f"/api/trace, {len(texts[0])} characters, median of {len(texts)} edits:")
    print(f"  server time        {median(server):7.1f} ms   (target < 200 ms)")
    print(f"  HTTP round trip    {median(trip):7.1f} ms")
    print(f"  trace() in-process {median(library):7.1f} ms")
    print(f"  server / trace()   {median(server) / median(library):7.2f}x")
    clamp = [{"op": "clamp", "name": name, "units": [QUOTE_CELL[1]], "value": 1.0}]
    server_iv = []
    for text in texts:
        time.sleep(SETTLE_S)
        data, _ = post(f"{url}/api/trace", {"text": text, "layer": QUOTE_CELL[0], "interventions": clamp})
        server_iv.append(data["server_ms"])
    print(f"  with a cell clamp  {median(server_iv):7.1f} ms   (the intervened run and the plain one)")
    features = [post(f"{url}/api/features", {"text": text, "quantity": "cell"})[1] for text in texts[:10]]
    print(f"/api/features round trip, median of 10: {median(features):.1f} ms")


def thread_times(model: Any, text: str, repeats: int = 15) -> None:
    """Why the server keeps torch on one thread: the explorer's trace work on this process's main thread (which
    loaded the model) against the same work on a second thread, side by side."""
    from concurrent.futures import ThreadPoolExecutor

    from lstm_interp.serve.explorer import Explorer

    explorer = Explorer(model, [], [0.3], 5_000)
    body = {"text": text, "layer": QUOTE_CELL[0], "quantity": "cell"}

    def timed() -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            explorer.trace_response(body)
            times.append((time.perf_counter() - started) * 1000)
        return median(times)

    timed()  # warm up
    with ThreadPoolExecutor(max_workers=1) as other:
        main, second = timed(), other.submit(timed).result()
    print(f"the same trace work in-process, median of {repeats}: main thread {main:.1f} ms, a second thread "
          f"{second:.1f} ms ({second / main:.2f}x)")  # fmt: skip


def ablation_loss(url: str, text: str) -> None:
    """The loss the page's status line shows on the README screenshot's passage, with the quote cell ablated."""
    ablate = [{"op": "ablate", "name": f"{QUOTE_CELL[0]}.cell", "units": [QUOTE_CELL[1]]}]
    data, _ = post(f"{url}/api/trace", {"text": text, "interventions": ablate})
    print(f"the screenshot's {len(text)} characters, quote cell {QUOTE_CELL[0]}:{QUOTE_CELL[1]} ablated: loss "
          f"{data['base_loss']:.3f} -> {data['loss']:.3f} nats/char")  # fmt: skip


def match_times(url: str, text: str) -> None:
    start = text.index('"') + 1
    body = {"text": text, "span": [start, start + 5], "threshold": 0.3, "before": 1, "after": 0}
    selected, _ = post(f"{url}/api/select", body)
    if not selected["cells"]:
        print("/api/match: the quoted span selects no cell; not timed")
        return
    trips = [post(f"{url}/api/match", {"cells": selected["cells"], "top": 50})[1] for _ in range(7)]
    found, _ = post(f"{url}/api/match", {"cells": selected["cells"], "top": 50})
    print(
        f"/api/match of {len(selected['cells'])} cells, top 50 ({len(found['matches'])} found), "
        f"round trip median of 7: {median(trips):.1f} ms"
    )


def page_times(url: str, texts: list[str], screenshot: Path | None) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import launch

    with launch() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/")
        page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=60_000)
        page.locator("#layer").select_option(QUOTE_CELL[0])  # not necessarily the layer the page opened on
        page.locator("#unit").fill(str(QUOTE_CELL[1]))
        whole, recolour, server = [], [], []
        for text in texts:
            done = page.evaluate("window.lstmExplorer.traces")
            page.locator("#input").fill(text)
            page.wait_for_function("n => window.lstmExplorer.traces > n", arg=done, timeout=60_000)
            state = page.evaluate("(() => { const s = window.lstmExplorer.state; return [s.lastTraceMs, "
                                  "s.result.server_ms]; })()")  # fmt: skip
            whole.append(state[0])
            server.append(state[1])
        for unit in range(20):  # recolouring alone: a unit change redraws the same trace
            renders = page.evaluate("window.lstmExplorer.renders")
            page.locator("#unit").fill(str(unit))
            page.wait_for_function("n => window.lstmExplorer.renders > n", arg=renders)
            recolour.append(page.evaluate("window.lstmExplorer.state.lastRenderMs"))
        print(f"the page, {len(texts[0])} characters, median of {len(texts)} edits (after the 150 ms debounce):")
        print(f"  request -> recoloured text {median(whole):7.1f} ms   (server {median(server):.1f} ms of it)")
        print(f"  recolouring alone          {median(recolour):7.1f} ms   (median of 20 unit changes)")
        if screenshot is not None:
            take_screenshot(page, texts[0], screenshot)


SHOWN_CHARS = 330  # the passage's characters in the README screenshot


def take_screenshot(page: Any, text: str, path: Path) -> None:
    shown = text[:SHOWN_CHARS]
    page.locator("#layer").select_option(QUOTE_CELL[0])
    page.locator("#unit").fill(str(QUOTE_CELL[1]))
    done = page.evaluate("window.lstmExplorer.traces")
    page.locator("#input").fill(shown)
    page.wait_for_function("n => window.lstmExplorer.traces > n", arg=done, timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('#features button').length > 0", timeout=60_000)
    # A quotation from its opening quote: in layers.1 it selects the quote cell and one other.
    start = shown.index('"Contez')
    spans = page.locator("#text span")
    first, last = spans.nth(start).bounding_box(), spans.nth(start + 19).bounding_box()
    assert first is not None and last is not None
    page.mouse.move(first["x"] + 1, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(last["x"] + last["width"] - 1, last["y"] + last["height"] / 2, steps=5)
    page.mouse.up()
    page.locator("#select").click()
    page.wait_for_function("() => /match\\(es\\)|no cell/.test(document.querySelector('#select-status').textContent)",
                           timeout=60_000)  # fmt: skip
    spans.nth(start + 8).hover()
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=False)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "model_cards" / "novel"))
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--corpus-chars", type=int, default=100_000)
    parser.add_argument("--edits", type=int, default=30)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    text = args.text.read_text(encoding="utf-8")
    model = load_pretrained(args.model)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {args.model}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_serve.") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(text[: args.corpus_chars], encoding="utf-8")
        started = time.perf_counter()
        process, url = start_server(args.model, corpus)
        print(f"server up, {args.corpus_chars:,}-character corpus indexed, in {time.perf_counter() - started:.1f} s")
        # The page's opening is worked out on the model's thread as the server starts: wait for it here, so that it
        # is not inside the first timed request.
        opening, ms = get(f"{url}/api/initial")
        print(f"/api/initial answered {ms / 1000:.1f} s after that: {opening['reason']}")
        try:
            texts = edits(passage(text), args.edits)
            api_times(url, model, texts)
            thread_times(model, texts[0])
            ablation_loss(url, passage(text)[:SHOWN_CHARS])
            match_times(url, texts[0])
            page_times(url, texts, args.screenshot)
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
