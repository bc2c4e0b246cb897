"""The unit atlas: ``ContextHeap`` against a brute-force reference, ``UnitAtlas`` on a hand-built quote unit (its top
contexts are quotations, their values the trace's exactly), merges equal to one pass, small corpora, bad input, the
folder written whole, the CLI end to end, and the pages and the explorer's card in a real headless Chromium.

The known answer is ``quote_model()`` of ``tests/test_state_index.py``: a one-layer LSTM whose unit 0 toggles at
every '"' (cell about +1 from an opening quote to the character before the closing one, -1 elsewhere), unit 1 grows
without bound (on everywhere: tanh(c) pinned at +1), the other units stay at 0.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from browser import artifacts_dir, launch
from cli_run import run_cli
from conftest import TINY_VOCAB, tiny_char_lstm
from test_serve import _first_line, _stop, _wait_for_info, colour_at, request
from test_state_index import quote_model

from lstm_interp.analysis import context_heap as heap_module
from lstm_interp.analysis import unit_atlas as atlas_module
from lstm_interp.analysis.context_heap import ContextHeap
from lstm_interp.analysis.unit_atlas import UnitAtlas
from lstm_interp.features import get_feature
from lstm_interp.interventions import Ablate, run_with_interventions
from lstm_interp.manifest import read_manifest
from lstm_interp.report.atlas_pages import index_rows, run_atlas, write_atlas_folder
from lstm_interp.tracing import display_codes, display_values, trace
from lstm_interp.vocab import VocabularyError

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"k": 5, "window": 10, "feature_chars": 2_000, "ablation_chars": 300, "segment_chars": 500}


def quote_corpus(pieces: int = 300, seed: int = 0) -> str:
    """Words of the tiny vocabulary, some quoted, on a few lines."""
    rng = random.Random(seed)
    words = ["ab", "xy", "a.b", "{x}", "yy", "b"]
    parts = []
    for i in range(pieces):
        phrase = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        parts.append(f'"{phrase}"' if rng.random() < 0.4 else phrase)
        if i % 25 == 24:
            parts.append("\n")
    return " ".join(parts) + "\n"


@pytest.fixture(scope="module")
def quote_atlas() -> tuple[Any, str, UnitAtlas]:
    model, text = quote_model(), quote_corpus()
    return model, text, UnitAtlas.build(model, text, **SMALL)


# ------------------------------------------------------------------------------------------ the context heap
def reference_peaks(x: np.ndarray, k: int, w: int, largest: bool) -> list[list[int]]:
    """The module's rule, step by step: strictly above the w steps before, at least the w after, NaN absent; the k
    best by value, ties to the earlier step."""
    s = x if largest else -x
    out = []
    for u in range(x.shape[1]):
        found = []
        for p in range(len(x)):
            if np.isnan(s[p, u]):
                continue
            left, right = s[max(0, p - w) : p, u], s[p + 1 : p + w + 1, u]
            if (left[~np.isnan(left)] < s[p, u]).all() and (right[~np.isnan(right)] <= s[p, u]).all():
                found.append((-s[p, u], p))
        out.append([p for _, p in sorted(found)[:k]])
    return out


def _fed(x: np.ndarray, ids: torch.Tensor, start: int, stop: int, k: int, w: int, largest: bool) -> ContextHeap:
    heap = ContextHeap(x.shape[1], k, w, largest=largest)
    middle = (start + stop) // 2
    for a, b in ((start, middle), (middle, stop)):
        if b > a:
            heap.update(torch.from_numpy(x[a:b]), ids[a:b], a)
    return heap


def test_the_heap_keeps_the_reference_peaks_and_merges_exactly() -> None:
    rng = np.random.default_rng(0)
    for trial in range(120):
        T, w, k = int(rng.integers(1, 130)), int(rng.integers(1, 9)), int(rng.integers(1, 6))
        x = rng.integers(-3, 4, size=(T, 3)).astype(np.float32)  # small integers: many ties and plateaus
        if trial % 3 == 0:
            x = rng.normal(size=(T, 3)).astype(np.float32)
        if trial % 5 == 0:
            x[rng.random((T, 3)) < 0.1] = np.nan
        ids = torch.arange(T) % 7
        for largest in (True, False):
            cuts = sorted({0, T, *rng.integers(0, T, size=3).tolist()})
            one = ContextHeap(3, k, w, largest=largest)
            for a, b in itertools.pairwise(cuts):
                one.update(torch.from_numpy(x[a:b]), ids[a:b], a)
            done = one.finished()
            kept = [[p for p in row if p >= 0] for row in done.positions().tolist()]
            assert kept == reference_peaks(x, k, w, largest), (trial, largest)
            # Three shards, each cut on its own, merged in either grouping: the same heap, bit for bit.
            m1 = int(rng.integers(0, T + 1))
            m2 = int(rng.integers(m1, T + 1))
            a, b, c = (_fed(x, ids, lo, hi, k, w, largest) for lo, hi in ((0, m1), (m1, m2), (m2, T)))
            for merged in (a.merge(b).merge(c).finished(), a.merge(b.merge(c)).finished()):
                assert torch.equal(merged.positions(), done.positions())
                assert torch.equal(merged.windows()[0], done.windows()[0])
                assert torch.equal(merged.windows()[1].nan_to_num(99), done.windows()[1].nan_to_num(99))
            # Every kept peak's passage is the stream itself around it.
            window_ids, window_values = done.windows()
            for unit, row in enumerate(done.positions().tolist()):
                for j, p in enumerate(row):
                    if p < 0:
                        continue
                    steps = np.arange(p - w, p + w + 1)
                    inside = (steps >= 0) & (steps < T)
                    assert window_ids[unit, j, inside].tolist() == ids[steps[inside]].tolist()
                    assert (window_ids[unit, j, ~inside] == -1).all()
                    expected = torch.from_numpy(x[steps[inside], unit])
                    assert torch.equal(window_values[unit, j, inside].nan_to_num(99), expected.nan_to_num(99))


def test_a_long_plateau_is_one_context_and_peaks_are_a_window_apart() -> None:
    x = torch.zeros(1000, 2)
    x[100:400, 0] = 1.0  # unit 0 high for 300 steps: one passage, its first step
    x[:, 1] = torch.randn(1000, generator=torch.Generator().manual_seed(0))  # unit 1: noise, peaks everywhere
    heap = ContextHeap(2, k=20, window=40)
    heap.update(x, torch.zeros(1000, dtype=torch.long), 0)
    done = heap.finished()
    # The plateau once, then the flat zeros once (their first step); nothing else.
    assert done.positions()[0].tolist()[:3] == [100, 0, -1] and int(done.found()[0]) == 2
    kept = sorted(p for p in done.positions()[1].tolist() if p >= 0)
    # Each kept peak dominates the 40 steps either side, so no two are within 40 steps: no passage shows twice.
    assert len(kept) >= 5 and min(np.diff(kept)) > 40


def test_heap_arguments_and_order_are_checked() -> None:
    with pytest.raises(ValueError, match="`k` must be a positive integer, got 0"):
        ContextHeap(4, k=0)
    heap = ContextHeap(2, k=2, window=3)
    heap.update(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="starting at step 7 does not continue the heap, ending at 5"):
        heap.update(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long), 7)
    with pytest.raises(ValueError, match=r"expected \(T, 2\) values"):
        heap.update(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="finished heaps cannot be merged"):
        heap.finished().merge(heap)


# ------------------------------------------------------------------------------------------ the quote unit
def test_the_quote_unit_s_contexts_are_quotations_with_the_trace_s_values(quote_atlas) -> None:
    model, text, atlas = quote_atlas
    traced = trace(model, text)
    cell = traced["layers.0.cell"]
    inside = get_feature("inside_quotes")(text)
    card = atlas.card("layers.0", 0)
    assert card["found"] == {"top": SMALL["k"], "bottom": SMALL["k"]}
    for side, wanted in (("top", True), ("bottom", False)):
        for context in card[side]:
            p = context["position"]
            assert bool(inside[p]) is wanted, (side, p, text[p - 5 : p + 5])
            assert context["value"] == float(cell[p, 0])  # exactly the trace's float32
            lo = max(0, p - SMALL["window"])
            assert context["text"] == text[lo : p + SMALL["window"] + 1] and context["peak"] == p - lo
            codes = base64.b64decode(context["codes"])
            expected = display_codes(cell[lo : p + SMALL["window"] + 1, :1], "cell")[0].numpy().tobytes()
            assert codes == expected
    # The exact window values of every context, as written to contexts.safetensors.
    positions, values = atlas._tensors["layers.0.top.positions"], atlas._tensors["layers.0.top.values"]
    w = SMALL["window"]
    for unit in range(8):
        for j, p in enumerate(positions[unit].tolist()):
            if p >= w and p + w < len(text):
                assert torch.equal(values[unit, j], cell[p - w : p + w + 1, unit])
    assert card["explained"] and card["features"][0]["feature"] in ("inside_quotes", "inside_string_literal")
    assert card["pinned"] is False and card["features"][0]["visible"]


def test_histogram_saturation_gates_and_output_match_direct_computations(quote_atlas) -> None:
    model, text, atlas = quote_atlas
    traced = trace(model, text)
    shown = display_values(traced["layers.0.cell"], "cell")
    for unit in range(8):
        card = atlas.card("layers.0", unit)
        assert sum(card["histogram"]) == card["steps"] == len(text)
        # The documented rule, floor((shown + 1) * 20) in float32; numpy's float64 bins agree but within a float32
        # rounding of an edge (this unit's -2e-9 cells, which float32 rounds onto the edge at 0).
        expected = torch.bincount(((shown[:, unit] + 1) * 20).floor().clamp(0, 39).long(), minlength=40)
        assert card["histogram"] == expected.tolist()
        numpy = np.histogram(shown[:, unit].numpy(), bins=40, range=(-1, 1))[0]
        assert np.abs(np.array(card["histogram"]) - numpy).sum() <= 2 * int((shown[:, unit].abs() < 1e-6).sum())
        assert card["saturation"] == pytest.approx(float((shown[:, unit].abs() >= 0.9).float().mean()))
        forget = traced["layers.0.forget_gate"][:, unit].double().mean()
        assert card["gates"]["memory_mean"] == pytest.approx(float(forget), abs=1e-12)
        opens = (traced["layers.0.input_gate"][:, unit] > 0.5).float().mean()
        assert card["gates"]["write_fraction"] == pytest.approx(float(opens))
        head = model.head.weight[:, unit]
        assert card["readout"]["raised"][0]["char"] == model.vocab.chars[int(head.argmax())]
        assert card["readout"]["lowered"][0]["char"] == model.vocab.chars[int(head.argmin())]
    # Unit 1 is on everywhere: pinned at +1, never presented as explained.
    pinned = atlas.card("layers.0", 1)
    assert pinned["pinned"] and pinned["saturation"] > 0.9 and not pinned["explained"]
    # The ablation is the library's own zero ablation of the cell, on the first ablation_chars characters.
    sample = text[: SMALL["ablation_chars"]]
    ids = model.vocab.encode(sample)
    base = trace(model, sample, names_filter="log_probs")["log_probs"][:-1].gather(1, ids[1:, None])
    ablated = run_with_interventions(model, sample, [Ablate("layers.0.cell", [0])], names_filter="log_probs")
    delta = base - ablated["log_probs"][:-1].gather(1, ids[1:, None])
    assert atlas.card("layers.0", 0)["ablation"]["delta_loss"] == pytest.approx(float(delta.double().mean()), abs=1e-6)


def test_the_merge_of_two_halves_equals_one_pass() -> None:
    model, text = tiny_char_lstm(weight_scale=3.0), quote_corpus(200, seed=1)
    whole = trace(model, text, names_filter=UnitAtlas("lstm", ["layers.0", "layers.1"], 8).names)
    options = {"k": 4, "window": 7, "feature_chars": 900, "ablation_chars": 120}
    one = UnitAtlas("lstm", whole.layer_names, 8, **options)
    for start in range(0, whole.num_steps, 333):
        one.update(whole.time_slice(start, start + 333), start)
    split = 1001  # not a segment boundary of the one pass
    halves = [UnitAtlas("lstm", whole.layer_names, 8, **options) for _ in range(2)]
    for part, (lo, hi) in zip(halves, ((0, split), (split, whole.num_steps)), strict=True):
        for start in range(lo, hi, 250):
            part.update(whole.time_slice(start, min(start + 250, hi)), start)
    merged = halves[0].merge(halves[1])
    cards = [atlas.finish(model).cards() for atlas in (one, merged)]
    for a, b in zip(*cards, strict=True):
        gates_a, gates_b = a.pop("gates"), b.pop("gates")
        assert a == b
        assert gates_a["memory_mean"] == pytest.approx(gates_b["memory_mean"], rel=1e-12)
        assert gates_a["write_fraction"] == gates_b["write_fraction"]


def test_a_file_corpus_read_in_pieces_equals_the_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, text = quote_model(), quote_corpus(120)
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    # Pieces of 97 characters, the files cut at a multiple of it: the same segments as the text's, so the same values
    # bit for bit (traces cut elsewhere differ by float rounding, which can reorder exact ties).
    files[0].write_text(text[: 7 * 97], encoding="utf-8")
    files[1].write_text(text[7 * 97 :], encoding="utf-8")
    monkeypatch.setattr("lstm_interp.analysis._index_files._READ_BYTES", 97)
    from_files = UnitAtlas.build(model, files, **SMALL)
    from_text = UnitAtlas.build(model, text, **SMALL)
    assert from_files.cards() == from_text.cards()
    assert from_files.meta["corpus"]["files"] == [str(f) for f in files]
    assert from_files.meta["corpus"]["sha256"] == from_text.meta["corpus"]["sha256"]


def test_a_corpus_smaller_than_k_windows_still_makes_an_atlas(tmp_path: Path) -> None:
    model, text = quote_model(), 'ab "xy" a.'
    atlas = UnitAtlas.build(model, text, k=20, window=40)
    card = atlas.card("layers.0", 0)
    assert 1 <= card["found"]["top"] < 20 and card["found"]["top"] == len(card["top"])
    assert card["top"][0]["text"] == text  # the whole corpus is the passage
    out = write_atlas_folder(atlas, tmp_path / "atlas")
    page = (out / "units" / "layers.0-0.html").read_text(encoding="utf-8")
    assert '"found":{"top":1' in page.replace(" ", "")


def test_gru_and_rnn_atlases_have_their_gates() -> None:
    text = quote_corpus(40)
    gru = UnitAtlas.build(tiny_char_lstm(cell="gru"), text, **SMALL).card("layers.1", 0)
    assert gru["quantity"] == "hidden" and gru["gates"]["memory_gate"] == "update_gate"
    rnn = UnitAtlas.build(tiny_char_lstm(cell="rnn"), text, layers=["layers.0"], **SMALL).card("layers.0", 2)
    assert rnn["gates"] is None and rnn["readout"] is None and rnn["ablation"] is not None
    bare = UnitAtlas.build(tiny_char_lstm(), text, k=3, window=5, feature_chars=0, ablation_chars=0)
    card = bare.card("layers.1", 0)
    assert card["features"] == [] and not card["explained"] and card["ablation"] is None and card["pinned"] is None
    assert bare.meta["ablation"] is None and bare.meta["features"]["chars"] == 0


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layers": ["layers.7"]}, ValueError, r"unknown layer 'layers.7'; the model's layers are \['layers.0'"),
        ({"quantity": "forget"}, ValueError, r"unknown quantity 'forget'; the quantities of a lstm layer are"),
        ({"k": 0}, ValueError, "`k` must be an integer >= 1, got 0"),
        ({"window": -1}, ValueError, "`window` must be an integer >= 1, got -1"),
        ({"bins": 1}, ValueError, "`bins` must be an integer >= 2, got 1"),
        ({"feature_chars": -5}, ValueError, "`feature_chars` must be an integer >= 0, got -5"),
        ({"features": ["inside_quotez"]}, ValueError, "inside_quotez"),
        ({"segment_chars": 0}, ValueError, "`segment_chars` must be a positive integer, got 0"),
        ({"on_unknown": "drop"}, ValueError, "`on_unknown` must be 'error' or 'skip', got 'drop'"),
    ],
)
def test_bad_arguments_fail_before_any_work(monkeypatch, kwargs, error, message) -> None:
    monkeypatch.setattr(atlas_module, "corpus_pass", _no_work)
    with pytest.raises(error, match=message):
        UnitAtlas.build(tiny_char_lstm(), quote_corpus(20), **kwargs)


def test_bad_corpora_fail_before_any_work(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(atlas_module, "corpus_pass", _no_work)
    model = tiny_char_lstm()
    with pytest.raises(VocabularyError, match=r"'Q' \(first at 3\)"):
        UnitAtlas.build(model, "ab Q")
    with pytest.raises(ValueError, match="the text is empty"):
        UnitAtlas.build(model, "")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        UnitAtlas.build(model, [tmp_path / "missing.txt"])
    (tmp_path / "latin1.txt").write_bytes(b"ab \xe9")
    with pytest.raises(ValueError, match="is not UTF-8: byte 0xe9"):
        UnitAtlas.build(model, [tmp_path / "latin1.txt"])
    with pytest.raises(TypeError, match="`model` must be a CharLSTM"):
        UnitAtlas.build(torch.nn.LSTM(3, 3), "ab")


def test_updates_merges_and_cards_refuse_what_cannot_be() -> None:
    model = tiny_char_lstm()
    atlas = UnitAtlas("lstm", ["layers.0", "layers.1"], 8)
    with pytest.raises(ValueError, match=r"the trace lacks \['layers.0.forget_gate'"):
        atlas.update(trace(model, "ab", names_filter="layers.*.cell"), 0)
    segment = trace(model, "ab xy", names_filter=atlas.names)
    atlas.update(segment, 0)
    with pytest.raises(ValueError, match="starting at step 9 does not continue the atlas, ending at 5"):
        atlas.update(segment, 9)
    other = UnitAtlas("lstm", ["layers.0", "layers.1"], 8, k=3)
    with pytest.raises(ValueError, match="cannot merge an atlas of"):
        atlas.merge(other)
    with pytest.raises(ValueError, match="not finished"):
        atlas.card("layers.0", 0)
    atlas.finish(model)
    with pytest.raises(ValueError, match=r"`unit` must be an integer 0 \.\. 7, got 8"):
        atlas.card("layers.0", 8)
    with pytest.raises(ValueError, match=r"unknown layer 'layers\.2'"):
        atlas.card("layers.2", 0)
    with pytest.raises(ValueError, match="finished"):
        atlas.update(segment, 5)


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the corpus was traced before the arguments were checked")


# ------------------------------------------------------------------------------------------ the folder
def test_the_folder_is_whole_refuses_foreign_files_and_loads_back(quote_atlas, tmp_path: Path, monkeypatch) -> None:
    model, _, atlas = quote_atlas
    out = write_atlas_folder(atlas, tmp_path / "atlas")
    manifest = read_manifest(out)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"} and manifest["kind"] == "unit_atlas"
    assert {"atlas.json", "contexts.safetensors", "index.html", "units/layers.0-0.html", "assets/colours.js"} <= files
    loaded = UnitAtlas.load(out)
    assert loaded.cards() == json.loads(json.dumps(atlas.cards())) and loaded.matches(model)
    assert not loaded.matches(tiny_char_lstm(num_layers=1, hidden_size=8, embedding_size=4, seed=1))
    # A crash while the folder is built leaves the previous one, whole.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr("lstm_interp.report.atlas_pages.write_manifest", _crash)
    with pytest.raises(RuntimeError, match="crash"):
        write_atlas_folder(atlas, out, title="another")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["atlas"]  # no partial folder left beside it
    monkeypatch.undo()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(FileExistsError, match=r"notes\.txt \(not in its manifest\.json\).*--overwrite"):
        write_atlas_folder(atlas, out)
    with pytest.raises(FileExistsError, match="notes"):  # refused before the pass, too
        run_atlas(model, "ab", out, **SMALL)
    write_atlas_folder(atlas, out, overwrite=True)
    assert not (out / "notes.txt").exists()


def _crash(*args: object, **kwargs: object) -> None:
    raise RuntimeError("crash")


ATLAS_CLI = "import sys; from lstm_interp.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_cli_end_to_end_and_killed_runs_leave_the_previous_atlas(tmp_path: Path) -> None:
    model_dir, corpus, out = tmp_path / "model", tmp_path / "corpus.txt", tmp_path / "atlas"
    tiny_char_lstm(weight_scale=3.0).save_pretrained(model_dir)
    corpus.write_text(quote_corpus(400), encoding="utf-8")
    small = ["--top-k", "5", "--window", "12", "--feature-chars", "3000", "--ablation-chars", "200"]
    code, stdout, stderr = run_cli(["atlas", str(model_dir), str(corpus), "--out", str(out), *small])
    assert code == 0, stderr
    assert f"Open {out / 'index.html'}" in stdout and "16 unit pages" in stdout
    atlas = UnitAtlas.load(out)
    assert len(atlas.cards()) == 16 and atlas.meta["k"] == 5 and atlas.meta["corpus"]["files"] == [str(corpus)]
    code, _, stderr = run_cli(["atlas", str(model_dir), str(corpus), "--out", str(out), "--features", "nope"])
    assert code == 2 and "argument --features" in stderr and "inside_quotes" in stderr
    code, _, stderr = run_cli(["atlas", str(model_dir), str(tmp_path / "none.txt"), "--out", str(out)])
    assert code == 2 and "none.txt" in stderr
    code, _, stderr = run_cli(["atlas", str(model_dir), str(corpus), "--out", str(out), "--layers", "layers.5"])
    assert code == 1 and "unknown layer 'layers.5'" in stderr
    # Killed at random moments, a rerun leaves the previous atlas or the new one, whole; never a mixture.
    argv = [sys.executable, "-c", ATLAS_CLI, "atlas", str(model_dir), str(corpus), "--out", str(out), *small,
            "--title", "rerun"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    duration = time.perf_counter() - started
    rng = random.Random(2)
    for _ in range(3):
        run = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        manifest = json.loads(files["manifest.json"])
        assert set(manifest["files"]) == set(files) - {"manifest.json"}
        assert manifest["arguments"]["title"] in (None, "Unit atlas: model", "rerun")
        UnitAtlas.load(out)  # whole: its files agree with its manifest
    subprocess.run(argv, env=env, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas", "corpus.txt", "model"]  # killed runs' partials gone


# ------------------------------------------------------------------------------------------ the pages
XSS = '<img src=x onerror="window.pwned=1">'


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, UnitAtlas]:
    """The quote model's atlas over a corpus with markup in it, written as a folder."""
    # The markup last: unit 1 (growing without bound) peaks at the last character, so its passage holds it.
    text = quote_corpus(300) + 'ab "xy" ' + XSS + "<script>window.pwned=1</script>"
    vocab = "".join(sorted(set(TINY_VOCAB) | set(text)))
    model = quote_model()
    wide = tiny_char_lstm(vocab, num_layers=1, hidden_size=8, embedding_size=4, seed=1)
    with torch.no_grad():  # the quote model's weights, over a vocabulary with the markup's characters (zeros)
        old = {c: i for i, c in enumerate(model.vocab.chars)}
        wide.embedding.weight.zero_()
        for c, i in old.items():
            wide.embedding.weight[wide.vocab.char_to_id(c)] = model.embedding.weight[i]
        wide.layers.load_state_dict(model.layers.state_dict())
    atlas = UnitAtlas.build(wide, text, **SMALL)
    out = write_atlas_folder(atlas, tmp_path_factory.mktemp("pages") / "atlas", title="Quote atlas <b>")
    return out, atlas


@pytest.fixture(scope="module")
def browser() -> Any:
    with launch() as chromium:
        yield chromium


def _open(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_function("Number(document.body.dataset.renders) >= 1", timeout=30_000)
    return page, errors


def test_the_index_sorts_filters_and_opens_on_a_unit_that_switches(browser, pages, tmp_path: Path) -> None:
    out, atlas = pages
    page, errors = _open(browser, out / "index.html")
    units = lambda: page.eval_on_selector_all("#units tbody tr", "rows => rows.map(r => r.dataset.unit)")  # noqa: E731
    first = units()
    assert first[0] == "0" and len(first) == 8  # the quote unit, explained and not pinned, heads the table
    assert first[-1] == "1"  # the pinned unit comes last
    assert page.title() == "Quote atlas <b>" and page.locator("h1").text_content() == "Quote atlas <b>"
    shot = artifacts_dir(tmp_path) / "atlas_index.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.locator("th[data-key=saturation]").click()  # descending first: the most saturated unit on top
    assert units()[0] == "1"
    page.locator("th[data-key=saturation]").click()
    assert units()[-1] == "1"
    page.locator("#hard-only").check()
    hard = [str(r["unit"]) for r in index_rows(atlas) if not r["explained"]]
    assert sorted(units()) == sorted(hard) and "0" not in units()
    assert page.locator("#count").text_content() == f"showing {len(hard)} of 8 units"
    page.locator("#hard-only").uncheck()
    href = page.locator("#units tbody tr[data-unit='0'] a").get_attribute("href")
    assert href == "units/layers.0-0.html"
    assert page.evaluate("window.pwned") is None and errors == []
    page.close()


def test_a_unit_page_colours_its_contexts_and_shows_markup_as_text(browser, pages, tmp_path: Path) -> None:
    out, atlas = pages
    page, errors = _open(browser, out / "units" / "layers.0-0.html")
    card = atlas.card("layers.0", 0)
    rows = page.locator(".contexts.top .context-list li")
    assert rows.count() == len(card["top"]) == SMALL["k"]
    first = card["top"][0]
    colours = page.eval_on_selector_all(
        ".contexts.top .context-list li:first-child .passage span", "s => s.map(x => x.style.backgroundColor)"
    )
    codes = base64.b64decode(first["codes"])
    assert colours == [colour_at(b / 127.5 - 1) for b in codes]
    assert len(set(colours)) > 1  # a cell shown as a cell visibly switches within its passage
    peak = page.locator(".contexts.top .context-list li:first-child .passage span.peak")
    assert peak.text_content() == first["text"][first["peak"]]
    text = page.locator("#card").text_content()
    assert "explained by inside_" in text and "Gate habits" in text and "head weights" in text
    shot = artifacts_dir(tmp_path) / "atlas_unit.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    # The markup of the corpus comes back as text, in the passages of the units that peak there.
    markup = [c for u in range(8) for side in ("top", "bottom") for c in atlas.card("layers.0", u)[side]
              if "<" in c["text"]]  # fmt: skip
    assert markup, "no context holds the corpus's markup"
    unit = next(u for u in range(8) for side in ("top", "bottom") if any("<" in c["text"]
                for c in atlas.card("layers.0", u)[side]))  # fmt: skip
    other, more = _open(browser, out / "units" / f"layers.0-{unit}.html")
    assert "<" in other.locator("#card").text_content() and other.evaluate("window.pwned") is None
    assert other.locator("#card img").count() == 0 and more == []
    other.close()
    assert errors == []
    page.close()


# ------------------------------------------------------------------------------------------ the explorer
SERVER_SCRIPT = """
import socket, sys
import torch
torch.set_num_threads(1)
import uvicorn
from lstm_interp import load_pretrained
from lstm_interp.serve.app import create_app
model = load_pretrained(sys.argv[1])
app = create_app(model, corpus_texts=[open(sys.argv[2], encoding="utf-8").read()], atlas=sys.argv[3] or None)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


def _serve(folder: Path, atlas: Path | None) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    stderr = folder / f"stderr-{atlas is not None}.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(folder / "model"), str(folder / "corpus.txt"), str(atlas or "")],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{int(_first_line(process, 60))}"
        _wait_for_info(url, process, stderr)
    except BaseException:
        _stop(process)
        raise
    return process, url


def test_the_explorer_shows_the_atlas_card_of_the_unit_it_shows(browser, tmp_path: Path) -> None:
    from lstm_interp.serve.app import create_app

    model, text = quote_model(), quote_corpus(300)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    out = run_atlas(model, text, tmp_path / "atlas", **SMALL)
    atlas = UnitAtlas.load(out)
    with pytest.raises(ValueError, match="was made of another model"):
        create_app(tiny_char_lstm(), atlas=out)
    process, url = _serve(tmp_path, out)
    try:
        status, info = request(f"{url}/api/info")
        assert status == 200 and info["atlas"]["layers"] == ["layers.0"] and info["atlas"]["k"] == SMALL["k"]
        status, body = request(f"{url}/api/atlas/layers.0/0")
        assert status == 200 and body["card"] == atlas.card("layers.0", 0) and body["meta"]["window"] == 10
        assert request(f"{url}/api/atlas/layers.3/0")[0] == 400
        status, body = request(f"{url}/api/atlas/layers.0/x")
        assert status == 400 and "must be an integer 0 .. 7, got 'x'" in body["error"]
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/")
        page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=30_000)
        page.locator("#unit").fill("0")
        page.wait_for_function("() => document.body.dataset.atlasCard === 'layers.0:0'", timeout=30_000)
        card = atlas.card("layers.0", 0)
        shown = page.locator("#atlas-card .contexts.top .context-list li")
        assert shown.count() == min(5, len(card["top"]))
        colours = page.eval_on_selector_all(
            "#atlas-card .contexts.top li:first-child .passage span", "s => s.map(x => x.style.backgroundColor)"
        )
        assert colours == [colour_at(b / 127.5 - 1) for b in base64.b64decode(card["top"][0]["codes"])]
        assert "explained by inside_" in page.locator("#atlas-card").text_content()
        page.locator("#unit").fill("1")  # another unit: its card follows
        page.wait_for_function("() => document.body.dataset.atlasCard === 'layers.0:1'", timeout=30_000)
        assert "pinned" in page.locator("#atlas-card .card-head").text_content()
        page.locator("#unit").fill("0")
        page.wait_for_function("() => document.body.dataset.atlasCard === 'layers.0:0'", timeout=30_000)
        shot = artifacts_dir(tmp_path) / "atlas_explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        assert errors == []
        page.close()
    finally:
        _stop(process)
    process, url = _serve(tmp_path, None)  # without an atlas: the route says how to get one, the page hides it
    try:
        status, body = request(f"{url}/api/atlas/layers.0/0")
        assert status == 404 and "--atlas DIR" in body["error"]
        assert request(f"{url}/api/info")[1]["atlas"] is None
    finally:
        _stop(process)


def test_the_heap_uses_order_preserving_keys() -> None:
    x = torch.tensor([-np.inf, -2.5, -0.0, 0.0, 1e-30, 3.0, np.inf], dtype=torch.float32)
    keys = heap_module._order_bits(x)
    assert torch.equal(torch.argsort(keys), torch.arange(len(x)))


def test_ablation_effects_of_chosen_units_equal_those_of_every_unit():
    """``units=`` runs only the chosen units, with the numbers the whole layer's pass gives them."""
    from lstm_interp.analysis.output_effects import ablation_effects

    model = tiny_char_lstm(weight_scale=3.0)
    ids = torch.as_tensor(model.vocab.encode(quote_corpus(20, seed=2)[:300]))
    every = ablation_effects(model, ids, ["layers.1"])
    chosen = ablation_effects(model, ids, ["layers.1"], units=[5, 2])
    assert list(chosen) == [("layers.1", 5), ("layers.1", 2)]
    for key, value in chosen.items():
        assert value == every[key]
    with pytest.raises(ValueError, match=r"`units` must be unit numbers in 0\.\.7, got \[8, -1\]"):
        ablation_effects(model, ids, ["layers.1"], units=[1, 8, -1])


def test_plot_unit_contexts_draws_each_card_s_contexts_on_the_red_blue_scale(tmp_path: Path):
    """The hard-to-tell slide: one panel per card, each context's row coloured from its codes (+1 blue, -1 red),
    the peak outlined, and the heading saying what the unit does to the loss."""
    from matplotlib.patches import Rectangle

    from lstm_interp.plots import plot_unit_contexts, save_figure

    model, text = tiny_char_lstm(weight_scale=3.0), quote_corpus(200, seed=1)
    atlas = UnitAtlas.build(model, text, layers=["layers.1"], **SMALL)
    cards = [atlas.card("layers.1", 0), atlas.card("layers.1", 3)]
    fig = plot_unit_contexts(cards, n=2)
    panels = fig.axes[:-1]  # the last axes is the colour bar
    assert len(panels) == 2
    for ax, card in zip(panels, cards, strict=True):
        assert ax.get_title(loc="left").startswith(f"layers.1 unit {card['unit']}")
        assert "zeroed: loss" in ax.get_title(loc="left")
        grid = ax.get_images()[0].get_array()  # (rows, columns, 4)
        contexts = card["top"][:2] + card["bottom"][:2]
        assert grid.shape[0] == len(contexts)
        for row, context in enumerate(contexts):
            red, _, blue = grid[row, context["peak"], :3]
            if context["shown"] > 0.2:
                assert blue > red
            if context["shown"] < -0.2:
                assert red > blue
        peaks = [p.get_x() for p in ax.patches if isinstance(p, Rectangle)]
        assert peaks == [c["peak"] for c in contexts]
    save_figure(fig, tmp_path / "contexts.png")
    with pytest.raises(ValueError, match="non-empty list of unit atlas cards"):
        plot_unit_contexts([])
    with pytest.raises(ValueError, match="`n`"):
        plot_unit_contexts(cards, n=0)
