"""The index cache: an entry per model, corpus and threshold, written whole, trusted only by what its header says;
``lstm-interp index MODEL CORPUS`` fills it and ``lstm-interp serve --corpus`` opens the entry instead of indexing."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import TINY_VOCAB, tiny_char_lstm
from test_serve_limits import _cli, _index_folders, _model_and_corpus, _stop
from test_unit_atlas import quote_corpus

from lstm_interp.analysis import StateIndex
from lstm_interp.analysis.index_cache import cache_root, cached_index, find_cached_index

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_an_entry_is_built_once_then_opened_and_each_threshold_has_its_own(tmp_path):
    model, text = tiny_char_lstm(), quote_corpus(200)
    seen: list[tuple[int, int]] = []
    built = cached_index(model, text, root=tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (built.num_steps, built.num_steps)
    again = cached_index(model, text, root=tmp_path, progress=lambda *_: pytest.fail("rebuilt a matching entry"))
    assert again.path == built.path and np.array_equal(again.bits("layers.1.cell"), built.bits("layers.1.cell"))
    other = cached_index(model, text, root=tmp_path, threshold=0.5)
    assert other.path != built.path and other.threshold == 0.5
    assert find_cached_index(model, text + "ab", root=tmp_path) is None  # another text: no entry, nothing built
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([built.path.name, other.path.name])


def test_a_stale_or_broken_entry_is_never_trusted_by_its_name(tmp_path):
    model, text = tiny_char_lstm(), quote_corpus(200)
    built = cached_index(model, text, root=tmp_path)
    header = json.loads((built.path / "index.json").read_text())
    header["threshold"] = 0.9  # an entry that says it is of another threshold
    (built.path / "index.json").write_text(json.dumps(header))
    assert find_cached_index(model, text, root=tmp_path) is None
    rebuilt = cached_index(model, text, root=tmp_path)
    assert rebuilt.path == built.path and rebuilt.threshold == 0.3
    (built.path / "bits" / "layers.0.cell.bin").write_bytes(b"short")  # a broken file: the size check fails
    assert find_cached_index(model, text, root=tmp_path) is None
    other_weights = tiny_char_lstm(seed=1)  # the same name would need the same weights' hash
    assert find_cached_index(other_weights, text, root=tmp_path) is None


def test_the_cache_folder_follows_lstm_interp_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_INTERP_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine" / "indexes"
    monkeypatch.delenv("LSTM_INTERP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "lstm_interp" / "indexes"


def test_the_index_command_fills_the_cache_and_serve_opens_it_without_indexing(tmp_path):
    model_dir, corpus = _model_and_corpus(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "LSTM_INTERP_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    entry = "import sys; from lstm_interp.cli.main import main; sys.exit(main())"
    built = subprocess.run([sys.executable, "-c", entry, "index", str(model_dir), str(corpus)], env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    entries = list((tmp_path / "cache" / "indexes").iterdir())
    assert len(entries) == 1 and f"wrote {entries[0]}" in built.stdout
    assert StateIndex.open(entries[0], verify=True).num_steps == len(corpus.read_text())
    process, url = _cli(tmp_path, "--corpus", str(corpus), env=env)
    try:
        assert _index_folders(tmp) == []  # the cached entry was opened: no temporary index was built
        request = urllib.request.Request(f"{url}/api/match", data=json.dumps({"cells": [["layers.0", 1]]}).encode(),
                                         headers={"Content-Type": "application/json", "Origin": url})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["matches"]
    finally:
        _stop(process)


def test_the_server_answers_at_once_and_says_how_far_indexing_is(tmp_path):
    from browser import launch
    from test_serve import open_page, request

    _model_and_corpus(tmp_path)
    rng = random.Random(1)
    big = tmp_path / "big.txt"  # long enough that indexing outlasts the checks below (tens of seconds here)
    big.write_text("".join(rng.choice(TINY_VOCAB) for _ in range(3_000_000)), encoding="utf-8")
    env = {**os.environ, "LSTM_INTERP_CACHE": str(tmp_path / "cache")}
    process, url = _cli(tmp_path, "--corpus", str(big), env=env)
    try:
        status, body = request(f"{url}/api/match", {"cells": [["layers.0", 1]]})
        assert status == 503 and re.fullmatch(r"indexing, \d+%: select and match .*", body["error"]), body
        status, info = request(f"{url}/api/info")
        assert status == 200 and 0 <= info["indexing"] < 100 and info["corpus_steps"] is None
        with launch() as browser:  # the page says it too, where the selection's matches would be
            page, errors = open_page(browser, url)
            status_text = "() => /indexing, \\d+%/.test(document.querySelector('#select-status').textContent)"
            page.wait_for_function(status_text)
            beside = page.locator("#index-status")  # beside the select & match button, in the header
            assert beside.is_visible() and re.fullmatch(r"corpus indexing, \d+%", beside.text_content() or "")
            page.screenshot(path=str(tmp_path / "indexing.png"))
            deadline = time.monotonic() + 300
            while request(f"{url}/api/info")[1]["indexing"] is not None:
                assert time.monotonic() < deadline, "indexing never finished"
                time.sleep(0.5)
            ready = "() => /corpora are indexed/.test(document.querySelector('#select-status').textContent)"
            page.wait_for_function(ready)
            assert not page.locator("#index-status").is_visible()
            assert errors == []
        status, found = request(f"{url}/api/match", {"cells": [["layers.0", 1]], "top": 3})
        assert status == 200 and found["matches"]
        assert request(f"{url}/api/info")[1]["corpus_steps"] == [3_000_000]
    finally:
        _stop(process)
