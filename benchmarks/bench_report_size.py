"""Size of the static HTML report (issue 13): the page before and after, side by side in one run.

Usage::

    python benchmarks/bench_report_size.py [--chars 1793 20000] [--text war_and_peace.txt] [--alternatives]
                                           [--browser]

For an untrained 2 x 512 ``CharLSTM`` (seed 0, the novel model's vocabulary) and the pretrained novel model
(``model_cards/novel``, 2 x 512), each text length traces the start of War and Peace with every LSTM quantity
(input, forget and output gates, cell candidate, cell, hidden) and writes the page with the top-5 predictions:

- ``before``: every unit, each blob deflated at zlib level 1 and base64 encoded, as the writer did before issue 13
  (:func:`old_pack`, swapped in for the new one; the page is for measuring only, its script expects base-128);
- ``every unit``: the new encoding (zlib level 6, base-128 text) with ``max_bytes=None``;
- ``default``: what ``write_html_report`` writes now, at most 15 MB, with the units it holds per layer.

It then finds the longest prefix whose default page still holds every unit (to 50 characters). ``--alternatives``
measures the encodings considered on the longest text's codes: zlib levels, a delta filter along time, 7- and 6-bit
gates, base64 against base-128. ``--browser`` opens each default page in the system Chromium (``tests/browser.py``)
and reports the time until the text is first coloured and how long the shown blob took to decode.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

import lstm_interp
import lstm_interp.report.html_report as html_report
from lstm_interp import CharLSTM, CharLSTMConfig, Trace, trace
from lstm_interp.report import write_html_report
from lstm_interp.report._encode import Blob, b128encode, display_codes
from lstm_interp.tracing import QUANTITY_KINDS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = Path("/work/shared/data/war_and_peace.txt")


def old_pack(data: bytes) -> Blob:
    """The blob encoding before issue 13: zlib level 1, kept when it saved 10%, then base64."""
    packed = zlib.compress(data, 1)
    deflated = len(packed) <= 0.9 * len(data)
    body = packed if deflated else data
    return Blob(base64.b64encode(body).decode("ascii"), deflated, len(data), len(body))


def write(tr: Trace, path: Path, chars: str, **kwargs) -> tuple[float, dict]:
    """Write the page; the seconds it took and its metadata (``limit`` says which units it holds)."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the limit's warning: reported from the page's metadata
        write_html_report(tr, path, chars=list(chars), top_k=5, **kwargs)
    seconds = time.perf_counter() - start
    found = re.search(r'id="report-meta">(.*?)</script>', path.read_text("utf-8"))
    assert found is not None
    return seconds, json.loads(found.group(1))


def write_old(tr: Trace, path: Path, chars: str) -> float:
    original = html_report.pack
    html_report.pack = old_pack
    try:
        return write(tr, path, chars, max_bytes=None)[0]
    finally:
        html_report.pack = original


def held(meta: dict) -> str:
    limit = meta.get("limit")
    if limit is None:
        return "every unit"
    return " + ".join(f"{layer['shown']}" for layer in limit["layers"]) + " units of 512"


def all_units_limit(tr: Trace, chars: str, folder: Path) -> int:
    """The most characters (to 50) whose default page holds every unit: a prefix of a trace is the trace of the
    prefix, as the state starts at zero."""
    lo, hi = 0, tr.num_steps
    while hi - lo > 50:
        mid = (lo + hi) // 2
        _, meta = write(tr.time_slice(0, mid), folder / "limit.html", chars)
        lo, hi = (mid, hi) if "limit" not in meta else (lo, mid)
    return lo


def alternatives(tr: Trace) -> None:
    """Bytes per value of each encoding considered, over every blob of ``tr`` (all quantities, both layers)."""
    sizes: dict[str, int] = {}
    seconds: dict[str, float] = {}
    values = 0

    def add(name: str, fn, data: bytes) -> None:
        start = time.perf_counter()
        sizes[name] = sizes.get(name, 0) + fn(data)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

    for layer in tr.layer_names:
        for q in tr.quantities:
            codes = display_codes(tr[f"{layer}.{q}"], q).numpy()
            values += codes.size
            raw = codes.tobytes()
            for level in (1, 6, 9):
                add(f"zlib {level}", lambda d, lv=level: len(zlib.compress(d, lv)), raw)
            delta = np.diff(codes, axis=1, prepend=np.zeros((len(codes), 1), np.uint8)).astype(np.uint8)
            add("delta along time + zlib 6", lambda d: len(zlib.compress(d, 6)), delta.tobytes())
            gate = QUANTITY_KINDS[q] == "gate"
            for bits in (7, 6):
                coarse = (codes >> (8 - bits)).astype(np.uint8).tobytes() if gate else raw
                add(f"gates at {bits} bits + zlib 6", lambda d: len(zlib.compress(d, 6)), coarse)
            packed = zlib.compress(raw, 6)
            add("zlib 6 + base64", lambda d: len(base64.b64encode(d)), packed)
            add("zlib 6 + base85", lambda d: len(base64.b85encode(d)), packed)
            add("zlib 6 + base-128 (chosen)", lambda d: len(b128encode(d).encode("utf-8")), packed)
    print(f"\nalternatives on {tr.num_steps:,} characters, {values:,} values (bytes per value, seconds):")
    for name, size in sizes.items():
        print(f"  {name:30s} {size / values:6.3f}  {size / 1e6:7.1f} MB  {seconds[name]:6.1f} s")


def browser_times(paths: list[Path]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import launch, open_report

    with launch() as browser:
        for path in paths:
            start = time.perf_counter()
            with open_report(browser, path) as (page, _):
                opened = time.perf_counter() - start
                decodes = page.evaluate("window.lstmReport.decodes")
                first = next(d for d in decodes if d["id"].startswith("a"))
            print(
                f"  {path.name:28s} open -> first colouring {opened:5.2f} s; shown blob decoded in {first['ms']:.0f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, nargs="+", default=[1793, 20000])
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--alternatives", action="store_true")
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()

    novel = lstm_interp.load_pretrained(ROOT / "model_cards" / "novel")
    vocab = novel.vocab
    allowed = set(vocab.chars)
    text = "".join(c for c in args.text.read_text("utf-8")[: 2 * max(args.chars)] if c in allowed)[: max(args.chars)]
    torch.manual_seed(0)
    config = CharLSTMConfig(vocab_size=len(vocab), num_layers=2, hidden_size=512, embedding_size=64)
    untrained = CharLSTM(config, vocab).eval()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; text: {args.text.name}, start")
    header = f"{'model':10s} {'chars':>7s} {'before':>9s} {'every unit':>11s} {'default':>9s}  default holds"
    pages = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, model in (("untrained", untrained), ("trained", novel)):
            full = trace(model, text)
            print(f"\n{header}   (MB; write seconds in brackets)")
            for n in args.chars:
                tr = full.time_slice(0, n)
                old_s = write_old(tr, folder / "old.html", vocab.chars)
                old = (folder / "old.html").stat().st_size
                all_s, _ = write(tr, folder / "all.html", vocab.chars, max_bytes=None)
                every = (folder / "all.html").stat().st_size
                page = folder / f"{name}_{n}.html"
                new_s, meta = write(tr, page, vocab.chars)
                pages.append(page)
                print(
                    f"{name:10s} {n:7,d} {old / 1e6:5.1f} ({old_s:.0f}) {every / 1e6:6.1f} ({all_s:.0f}) "
                    f"{page.stat().st_size / 1e6:5.1f} ({new_s:.0f})  {held(meta)}"
                )
            limit = all_units_limit(full, vocab.chars, folder)
            print(f"{name}: every unit fits in the default page up to {limit:,} characters")
            if args.alternatives:
                alternatives(full)
        if args.browser:
            print("\nChromium (headless, this machine):")
            browser_times(pages)


if __name__ == "__main__":
    main()
