"""`write_html_report`: the page is self-contained and safe, and in a real headless Chromium it recolours, shows
tooltips and stays usable on a 20,000-character probe."""

from __future__ import annotations

import base64
import json
import re
import warnings
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import artifacts_dir, backgrounds, launch, open_report, recolour
from pictures import QUOTE, SAT, SWITCH, pinned_model, pinned_text

from lstm_interp import CharLSTM, Trace, find_cells, trace
from lstm_interp.report import best_feature_match, write_html_report
from lstm_interp.report._encode import b128decode, b128encode, display_codes, pack, unpack
from lstm_interp.report.html_report import ranked_feature_matches
from lstm_interp.report.saturation import state_saturation
from lstm_interp.tracing import most_variable_units

TEXT = (
    'He said, "the door was open"\nand then <script>alert(1)</script> & left.\n'
    '\t"Quoted <b>bold</b>" -- `code`\nend of "probe"\n'
)
TITLE = "<img src=x onerror=alert(2)> report & co"
MATCHES = {"inside quotes": [{"layer": "layers.1", "unit": 3, "score": 0.91, "sign": -1}]}


def shown_as(text: str) -> str:
    """What the page prints for ``text``: newlines and tabs get a visible mark before them."""
    return text.replace("\n", "↵\n").replace("\t", "→\t")


def page_meta(path: Path) -> dict:
    found = re.search(r'<script type="application/json" id="report-meta">(.*?)</script>', path.read_text("utf-8"))
    assert found is not None
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def browser():
    with launch() as browser:
        yield browser


@pytest.fixture(scope="module")
def tiny(make_model) -> tuple[CharLSTM, Trace]:
    model = make_model(TEXT, from_text=True)
    return model, trace(model, TEXT)


@pytest.fixture
def tiny_report(tiny, tmp_path) -> Path:
    model, tr = tiny
    return write_html_report(
        tr, tmp_path / "report.html", chars=model.vocab.chars, title=TITLE, step=1200, feature_matches=MATCHES
    )


def random_trace(T: int, H: int, V: int, seed: int = 0) -> Trace:
    """A trace of the right shapes without running a model: a long probe in milliseconds."""
    g = torch.Generator().manual_seed(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz   .,\"'\n"
    text = "".join(alphabet[i] for i in torch.randint(len(alphabet), (T,), generator=g).tolist())
    acts = {}
    for layer in ("layers.0", "layers.1"):
        acts[f"{layer}.cell"] = 2 * torch.randn(T, H, generator=g)
        acts[f"{layer}.hidden"] = torch.tanh(torch.randn(T, H, generator=g))
        acts[f"{layer}.forget_gate"] = torch.sigmoid(torch.randn(T, H, generator=g)).half()
    acts["log_probs"] = torch.log_softmax(torch.randn(T, V, generator=g), dim=-1)
    return Trace(acts, text=text, tokens=torch.zeros(T, dtype=torch.long), cell="lstm", num_layers=2)


# ---------------------------------------------------------------------------------------------- the file itself
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def test_page_is_self_contained_and_escapes_the_title(tiny_report):
    parser = _Tags()
    parser.feed(tiny_report.read_text("utf-8"))
    assert not [t for t, attrs in parser.tags if t in ("link", "img", "iframe") or {"src", "href"} & set(attrs)]
    assert "&lt;img src=x onerror=alert(2)&gt; report &amp; co" in tiny_report.read_text("utf-8")
    assert [p.name for p in tiny_report.parent.iterdir()] == ["report.html"]  # no temporary file left behind


def test_codes_cover_the_scale_and_blobs_round_trip():
    gate = torch.tensor([[0.0, 0.5, 1.0]])
    assert display_codes(gate, "forget_gate").flatten().tolist() == [0, 128, 255]
    cell = torch.tensor([[-50.0, 0.0, float("nan"), 50.0]])
    assert display_codes(cell, "cell").flatten().tolist() == [0, 128, 128, 255]
    codes = display_codes(torch.randn(300, 7), "hidden")
    assert codes.shape == (7, 300)  # unit-major: one unit's characters are contiguous
    for data in (bytes(10_000), codes.numpy().tobytes()):
        assert unpack(pack(data)) == data
    assert pack(bytes(10_000)).deflated


def test_quantities_and_top_k_choose_what_is_embedded(tiny, tmp_path):
    model, tr = tiny
    full = write_html_report(tr, tmp_path / "full.html", chars=model.vocab.chars)
    small = write_html_report(tr, tmp_path / "small.html", quantities=["cell"], top_k=50, top_units=3)
    meta = page_meta(small)
    assert [[q["name"] for q in layer["quantities"]] for layer in meta["probes"][0]["layers"]] == [["cell"], ["cell"]]
    assert all(len(q["top"]) == 3 for layer in meta["probes"][0]["layers"] for q in layer["quantities"])
    assert meta["probes"][0]["predictions"] is None  # no vocabulary, no predictions
    assert page_meta(full)["probes"][0]["predictions"]["k"] == 5
    capped = write_html_report(tr, tmp_path / "capped.html", chars=model.vocab.chars, top_k=10_000)
    assert page_meta(capped)["probes"][0]["predictions"]["k"] == len(model.vocab)
    assert small.stat().st_size < full.stat().st_size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"traces": []}, "`traces` is empty"),
        ({"top_k": 0}, "`top_k` must be >= 1, got 0"),
        ({"top_units": -2}, "`top_units` must be >= 1, got -2"),
        ({"max_bytes": 0}, "`max_bytes` must be a positive integer or None, got 0"),
        ({"max_bytes": 1.5e7}, "`max_bytes` must be a positive integer or None"),
        ({"quantities": ["cell", "bogus"]}, r"unknown names \['bogus'\]"),
        ({"quantities": ["reset_gate"]}, "holds no quantity the report can show"),
        ({"chars": "abc"}, "`chars` has 3 characters"),
        ({"feature_matches": {"f": [{"layer": "layers.7", "unit": 0}]}}, "names layer 'layers.7'"),
        ({"feature_matches": {"f": [{"layer": "layers.0", "unit": 8}]}}, "names unit 8 of 'layers.0'"),
    ],
)
def test_bad_arguments_raise(tiny, tmp_path, kwargs, message):
    _, tr = tiny
    kwargs = {"traces": tr, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_html_report(path=tmp_path / "r.html", **kwargs)
    assert not (tmp_path / "r.html").exists()


def test_trace_with_nothing_to_show_raises(tmp_path):
    only_logits = Trace({"log_probs": torch.zeros(3, 4)}, text="abc", tokens=torch.zeros(3), cell="lstm", num_layers=1)
    with pytest.raises(ValueError, match=r"trace 0 holds no quantity the report can show; it holds \['log_probs'\]"):
        write_html_report(only_logits, tmp_path / "r.html")
    with pytest.raises(TypeError, match="must be a Trace, got dict"):
        write_html_report([{}], tmp_path / "r.html")  # type: ignore[list-item]


def test_foreign_gru_trace_without_text(tmp_path):
    """A trace of a foreign module: custom layer names, no text (dots stand in), GRU quantities."""
    acts = {f"encoder.gru.0.{q}": torch.rand(6, 3) for q in ("reset_gate", "update_gate", "new_gate", "hidden")}
    tr = Trace(acts, text=None, tokens=torch.arange(6), cell="gru", num_layers=1, layer_names=["encoder.gru.0"])
    meta = page_meta(write_html_report(tr, tmp_path / "gru.html"))
    (probe,) = meta["probes"]
    assert probe["text"] == "·" * 6
    assert [q["name"] for q in probe["layers"][0]["quantities"]] == ["hidden", "reset_gate", "update_gate", "new_gate"]
    assert probe["layers"][0]["name"] == "encoder.gru.0"


# ---------------------------------------------------------------------------------------------- in the browser
def test_page_shows_the_text_as_text(browser, tiny_report):
    with open_report(browser, tiny_report) as (page, log):
        assert page.locator("#text span").count() == len(TEXT)
        assert page.evaluate("[...document.querySelectorAll('#text span')].map(s => s.textContent).join('')") == (
            shown_as(TEXT)
        )
        assert page.locator("#text script, #text b, h1 img").count() == 0
        assert page.locator("h1").inner_text() == TITLE
        assert "step 1,200" in page.locator(".subtitle").inner_text()
        assert log.errors == [] and log.dialogs == []


def test_controls_recolour_the_text(browser, tiny_report):
    with open_report(browser, tiny_report) as (page, log):
        state = lambda: page.evaluate("({...window.lstmReport.state})")  # noqa: E731

        def changes(action) -> None:
            before = backgrounds(page)
            with recolour(page):
                action()
            assert backgrounds(page) != before

        changes(lambda: page.fill("#unit", str((state()["unit"] + 1) % 8)))
        page.fill("#unit", "0")
        changes(lambda: page.click("#next"))
        assert state()["unit"] == 1
        changes(lambda: page.fill("#unit-slider", "5"))
        assert page.input_value("#unit") == "5"
        changes(lambda: page.select_option("#quantity", label="hidden"))
        changes(lambda: page.select_option("#layer", label="layers.1"))
        assert page.input_value("#quantity") == "1"  # the quantity is kept across layers
        page.locator("#text").focus()
        changes(lambda: page.keyboard.press("ArrowLeft"))
        assert state()["unit"] == 4

        changes(lambda: page.select_option("#quantity", label="forget_gate"))
        assert page.locator("#legend-mid").inner_text() == "0.5"
        assert "centred at 0.5" in page.locator("#legend-caption").inner_text()

        second = page.locator("#top-units li").nth(1)
        with recolour(page):
            second.click()
        assert state()["unit"] == int(second.get_attribute("data-unit"))
        assert "current" in second.get_attribute("class")

        page.select_option("#layer", label="layers.0")
        with recolour(page):
            page.locator("#features li").first.click()
        assert state()["layer"] == 1 and state()["unit"] == 3
        assert page.locator("#features li").first.inner_text().split() == ["layers.1", "#3", "−0.91"]
        assert log.errors == [] and log.dialogs == []


def test_tooltip_shows_character_value_and_predictions(browser, tiny_report, tmp_path):
    quote = TEXT.index('"')
    with open_report(browser, tiny_report) as (page, log):
        page.locator("#text span").nth(quote).hover()
        tooltip = page.locator("#tooltip")
        assert tooltip.is_visible()
        assert tooltip.locator(".tt-char").inner_text() == '"'
        assert f"position {quote} · line 1, col {quote + 1}" in tooltip.inner_text()
        assert "layers.0 #" in tooltip.inner_text() and "tanh(cell) = " in tooltip.inner_text()
        rows = tooltip.locator(".tt-preds tr")
        assert rows.count() == 5
        assert all(re.fullmatch(r"(<1|\d{1,3})%", rows.nth(i).locator("td.p").inner_text()) for i in range(5))

        page.locator("#text span").nth(TEXT.index("\n")).hover()
        assert "newline" in tooltip.inner_text()
        page.locator("#text span").nth(TEXT.index("<")).hover()
        assert tooltip.locator(".tt-char").inner_text() == "<"
        shot = artifacts_dir(tmp_path) / "html_report_tiny.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert log.errors == [] and log.dialogs == []


def test_several_probes(browser, tiny, tmp_path):
    model, tr = tiny
    other = trace(model, "short one")
    path = write_html_report([tr, other], tmp_path / "two.html", chars=model.vocab.chars, title="two probes")
    with open_report(browser, path) as (page, log):
        assert page.locator("#probe option").count() == 2
        with recolour(page):
            page.select_option("#probe", index=1)
        assert page.locator("#text span").count() == len("short one")
        assert log.errors == []


def test_long_probe_stays_usable(browser, tmp_path):
    T, H = 20_000, 64
    path = write_html_report(random_trace(T, H, V=40), tmp_path / "long.html", chars=[chr(65 + i) for i in range(40)])
    print(f"20k-character report ({H} units x 2 layers x 3 quantities): {path.stat().st_size / 1e6:.1f} MB")
    with open_report(browser, path) as (page, log):
        assert page.locator("#text span").count() == T
        with recolour(page):
            page.fill("#unit", "0")  # it opens on the most variable unit, which may be the last
        for _ in range(3):
            before = backgrounds(page, 500)
            with recolour(page):
                page.click("#next")
            assert backgrounds(page, 500) != before
        page.wait_for_timeout(100)  # let the last change paint, so its frame time is recorded
        timings = page.evaluate("window.lstmReport.timings")
        assert all(t["chars"] == T for t in timings)
        shown = [(round(t["loopMs"], 1), t["frameMs"] and round(t["frameMs"])) for t in timings]
        print("recolour timings (JS loop ms, until painted ms):", shown)
        page.locator("#text span").nth(T // 100).hover()
        assert page.locator("#tooltip .tt-preds tr").count() == 5
        shot = artifacts_dir(tmp_path) / "html_report_long.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert log.errors == [] and log.dialogs == []


# ---------------------------------------------------------------------------------------------- size (issue 13)
def blob_texts(path: Path, prefix: str = "a") -> dict[str, str]:
    """The page's blobs by id (activations are ``a0``, ``a1``...; predictions and input series ``b0``...)."""
    pattern = rf'<script type="application/octet-stream" id="({prefix}\d+)"[^>]*>(.*?)</script>'
    return dict(re.findall(pattern, path.read_text("utf-8"), flags=re.S))


def old_blob_bytes(data: bytes) -> int:
    """What a blob cost before issue 13: zlib level 1 (kept only when it saved 10%), then base64."""
    packed = zlib.compress(data, 1)
    return len(base64.b64encode(packed if len(packed) <= 0.9 * len(data) else data))


def uniform_trace(T: int, H: int, seed: int = 0) -> Trace:
    """Codes of every value 0..255: uniform hidden states (incompressible, stored raw) and cells (deflated)."""
    g = torch.Generator().manual_seed(seed)
    acts = {
        "layers.0.hidden": torch.rand(T, H, generator=g) * 2 - 1,
        "layers.0.cell": torch.randint(-1, 2, (T, H), generator=g).float() * 3,
    }
    return Trace(acts, text="x" * T, tokens=torch.zeros(T, dtype=torch.long), cell="lstm", num_layers=1)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"<", b"\r", b"\n", bytes(range(256)), b"<" * 999, b"\x00\r<" * 50 + b"\x00", bytes(range(7))],
)
def test_base128_round_trips_and_is_safe_inside_a_script(data):
    text = b128encode(data)
    assert b128decode(text, len(data)) == data
    assert not {"\x00", "\r", "<"} & set(text)  # what the HTML parser would alter, or read as the end of the script
    assert len(text.encode("utf-8")) <= -(-8 * len(data) // 7) + 1  # 8/7 of the bytes, against base64's 4/3


def test_base128_of_random_bytes():
    g = torch.Generator().manual_seed(3)
    for n in [*range(1, 30), 1000, 10_007]:
        data = torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).numpy().tobytes()
        assert b128decode(b128encode(data), n) == data
        assert unpack(pack(data)) == data


def test_page_decodes_exactly_the_codes_python_made(browser, tmp_path):
    tr = uniform_trace(T=600, H=12)
    path = write_html_report(tr, tmp_path / "codes.html")
    quantities = page_meta(path)["probes"][0]["layers"][0]["quantities"]  # cell, hidden
    expected = {q["blob"]: display_codes(tr[f"layers.0.{q['name']}"], q["name"]).numpy() for q in quantities}
    cell, hidden = (q["blob"] for q in quantities)
    assert set(expected[hidden].flatten().tolist()) == set(range(256))  # NUL, CR and "<" too, as bytes of the blob
    tags = dict(re.findall(r'<script type="application/octet-stream" id="(a\d+)"([^>]*)>', path.read_text("utf-8")))
    assert "data-deflated" in tags[cell] and "data-deflated" not in tags[hidden]  # both decoding paths
    with open_report(browser, path) as (page, log):
        for blob, codes in expected.items():
            assert page.evaluate("id => window.lstmReport.decode(id)", blob) == codes.flatten().tolist()
        unit = page.evaluate("window.lstmReport.state.unit")
        assert page.evaluate("window.lstmReport.painted()") == expected[cell][unit].tolist()
        assert log.errors == []


def test_encoding_costs_less_per_value_than_base64(make_model, tmp_path):
    """A moderate probe through a real (untrained) 2 x 64 LSTM: the blobs of the page against the old encoding."""
    g = torch.Generator().manual_seed(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz   .,\"'\n"
    text = "".join(alphabet[i] for i in torch.randint(len(alphabet), (3000,), generator=g).tolist())
    model = make_model(alphabet, from_text=True, hidden_size=64)
    tr = trace(model, text)
    path = write_html_report(tr, tmp_path / "size.html", chars=model.vocab.chars)
    new = sum(len(text.encode("utf-8")) for text in blob_texts(path).values())
    values = old = 0
    for layer in tr.layer_names:
        for q in tr.quantities:
            data = display_codes(tr[f"{layer}.{q}"], q).numpy().tobytes()
            values += len(data)
            old += old_blob_bytes(data)
    print(f"bytes per value: {new / values:.3f} (before issue 13: {old / values:.3f})")
    assert new / values < 0.87 * (old / values)


def long_trace_with_matches(T: int = 3000, H: int = 64) -> tuple[Trace, dict, dict]:
    tr = random_trace(T, H, V=40)
    ranked = [row.unit for row in most_variable_units(tr, "cell", H, layer="layers.1")]
    matches = {"a feature": [{"layer": "layers.1", "unit": ranked[-1], "score": 0.8, "sign": 1}]}  # the least variable
    return tr, matches, {"layer": "layers.0", "unit": 5}


def test_max_bytes_keeps_every_character_and_the_units_that_fit(tmp_path):
    tr, matches, open_on = long_trace_with_matches()
    chars = [chr(65 + i) for i in range(40)]
    with pytest.warns(UserWarning, match=r"holds \d+ of 64 units of layers\.0.*use `lstm-interp serve`"):
        path = write_html_report(
            tr, tmp_path / "limited.html", chars=chars, feature_matches=matches, open_on=open_on, max_bytes=700_000
        )
    assert 600_000 < path.stat().st_size <= 700_000  # full, but within the limit
    meta = page_meta(path)
    (probe,) = meta["probes"]
    assert probe["text"] == tr.text  # every character
    assert meta["limit"]["chars"] == 3000 and meta["limit"]["serve"] == "lstm-interp serve"
    for layer, held in zip(probe["layers"], meta["limit"]["layers"], strict=True):
        rows = layer["quantities"][0]["rows"]
        assert [q["rows"] for q in layer["quantities"]] == [rows] * 3  # one set per layer, for every quantity
        assert rows == sorted(set(rows)) and 1 < len(rows) < 64
        assert held == {"name": layer["name"], "shown": len(rows), "units": 64}
        for q in layer["quantities"]:
            ranked = [row.unit for row in most_variable_units(tr, q["name"], 64, layer=layer["name"])]
            assert [unit for unit, _ in q["top"]] == [u for u in ranked if u in rows][:20]  # the top list: held units
            assert ranked[0] in rows  # the most variable unit of every quantity is held
    assert 5 in probe["layers"][0]["quantities"][0]["rows"]  # open_on
    assert matches["a feature"][0]["unit"] in probe["layers"][1]["quantities"][0]["rows"]  # the feature match

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = write_html_report(tr, tmp_path / "whole.html", chars=chars, max_bytes=None)
        small = write_html_report(tr, tmp_path / "default.html", chars=chars)  # 2 MB: under the default 15 MB
    for page in (whole, small):
        assert "limit" not in page_meta(page)
        assert all("rows" not in q for layer in page_meta(page)["probes"][0]["layers"] for q in layer["quantities"])
    assert whole.read_bytes() == small.read_bytes()


def test_a_limit_too_small_for_the_named_units_still_writes_the_page(tmp_path):
    tr, matches, open_on = long_trace_with_matches()
    with pytest.warns(UserWarning, match="more than max_bytes=1,000, with no unit left to drop"):
        path = write_html_report(tr, tmp_path / "tiny.html", feature_matches=matches, open_on=open_on, max_bytes=1000)
    layers = page_meta(path)["probes"][0]["layers"]
    assert layers[0]["quantities"][0]["rows"] == [5]
    assert layers[1]["quantities"][0]["rows"] == [matches["a feature"][0]["unit"]]


def test_page_holding_some_units_says_so_and_steps_between_them(browser, tmp_path):
    tr, matches, _ = long_trace_with_matches()
    with pytest.warns(UserWarning):
        path = write_html_report(tr, tmp_path / "limited.html", feature_matches=matches, max_bytes=700_000)
    layers = page_meta(path)["probes"][0]["layers"]
    rows = layers[0]["quantities"][0]["rows"]
    codes = display_codes(tr["layers.0.cell"], "cell").numpy()
    with open_report(browser, path) as (page, log):
        state = lambda: page.evaluate("({...window.lstmReport.state})")  # noqa: E731
        note = page.locator("#limit-note")
        assert note.is_visible()
        assert f"{len(rows)} of the 64 units of layers.0" in note.inner_text()
        assert note.locator("code").inner_text() == "lstm-interp serve"
        assert page.locator("#unit-count").inner_text() == f"of 64 · {len(rows)} in this page"
        assert state()["unit"] in rows
        with recolour(page):
            page.fill("#unit-slider", "0")
        assert state()["unit"] == rows[0] and page.input_value("#unit") == str(rows[0])
        for i in range(1, 4):
            with recolour(page):
                page.click("#next")
            assert state()["unit"] == rows[i]  # the next held unit, skipping those the page lacks
            assert page.evaluate("window.lstmReport.painted()") == codes[rows[i]].tolist()
        with recolour(page):
            page.click("#prev")
        assert state()["unit"] == rows[2]
        missing = next(u for u in range(64) if u not in rows)
        nearest = min(rows, key=lambda u: (abs(u - missing), u))
        with recolour(page):
            page.fill("#unit", str(missing))
            page.locator("#unit").press("Enter")
        assert state()["unit"] == nearest
        assert page.evaluate("window.lstmReport.painted()") == codes[nearest].tolist()
        with recolour(page):
            page.select_option("#layer", label="layers.1")
        assert state()["unit"] in layers[1]["quantities"][0]["rows"]
        shot = artifacts_dir(tmp_path) / "html_report_limited.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert log.errors == [] and log.dialogs == []


# ---------------------------------------------------------------------------------- opening on a unit that varies
def test_best_feature_match_follows_find_cells_rule_across_features():
    flat_strong = {"layer": "layers.0", "unit": 1, "metric": "pearson", "score": 0.95, "visible": False}
    visible_weak = {"layer": "layers.0", "unit": 2, "metric": "auc", "score": 0.8, "visible": True}  # strength 0.6
    beats = {"layer": "layers.1", "unit": 3, "metric": "auc", "score": 0.76, "visible": True, "beats_controls": True}
    loses = {"layer": "layers.1", "unit": 4, "metric": "pearson", "score": 0.9, "visible": True}
    loses["beats_controls"] = False
    old = {"layer": "layers.1", "unit": 5, "metric": "pearson", "score": 0.7}  # an index written before the flag
    assert best_feature_match({"a": [flat_strong], "b": [visible_weak]}) is visible_weak
    assert best_feature_match({"a": [flat_strong], "b": [old]}) is old  # no flag: visible
    assert best_feature_match({"a": [loses], "b": [beats]}) is beats  # a unit of its control ranks below: 0.9 > 0.52
    # A feature without controls has none to lose to (as the explorer ranks): then by strength, 0.6 > 0.52.
    assert best_feature_match({"a": [loses], "b": [beats], "c": [visible_weak]}) is visible_weak
    # Only each feature's first row counts: find_cells already put its best unit by the rule there.
    assert best_feature_match({"a": [visible_weak, {**flat_strong, "visible": True}]}) is visible_weak
    ranked = ranked_feature_matches({"a": [flat_strong], "b": [loses], "c": [beats], "d": [old]})
    assert [r["unit"] for r in ranked] == [5, 3, 4, 1]
    assert best_feature_match({"a": [flat_strong]}) is flat_strong  # nothing visible: the strongest
    assert best_feature_match({"a": []}) is None and best_feature_match(None) is None


@pytest.fixture(scope="module")
def pinned_text_600() -> str:
    return pinned_text(600)


def test_report_opens_on_the_unit_that_switches_not_the_flat_one_that_scores_higher(browser, pinned_text_600, tmp_path):
    model = pinned_model(switching=True)
    tr = trace(model, pinned_text_600)
    table = find_cells(tr, "position_in_line", top=3)
    switch, sat = table[0], table[1]
    # The case of issue 20: the flat unit has the higher r, the switching one is first by find_cells's rule.
    assert (switch.unit, sat.unit) == (SWITCH, SAT) and sat.score > switch.score
    assert switch.visible and not sat.visible
    matches = {"position_in_line": [row.to_dict() for row in table]}
    path = write_html_report(
        tr, tmp_path / "switch.html", chars=model.vocab.chars, feature_matches=matches,
        open_on=best_feature_match(matches),
    )  # fmt: skip
    meta = page_meta(path)
    assert meta["open"]["unit"] == SWITCH and "note" not in meta
    assert [m.get("visible") for m in meta["features"][0]["matches"]] == [True, False, False]
    with open_report(browser, path) as (page, log):
        state = page.evaluate("({...window.lstmReport.state})")
        assert (state["layer"], state["unit"]) == (0, SWITCH)
        assert page.locator("#quantity option:checked").inner_text() == "cell"
        painted = np.array(page.evaluate("window.lstmReport.painted()"))
        assert painted.std() > 20 and len(set(backgrounds(page, 600))) > 20  # a ramp along each line, not a band
        assert not page.locator("#open-note").is_visible()
        items = page.locator("#features li")
        assert "flat" not in items.nth(0).inner_text().split()
        assert items.nth(1).inner_text().split()[:3] == ["layers.0", f"#{SAT}", "flat"]
        assert "moves by +0.15" in items.nth(1).get_attribute("title")
        shot = artifacts_dir(tmp_path) / "html_report_switching.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert log.errors == [] and log.dialogs == []


def test_report_on_pinned_cells_says_so_with_the_sd_and_opens_on_what_varies(browser, pinned_text_600, tmp_path):
    model = pinned_model(switching=False)
    tr = trace(model, pinned_text_600)
    matches = {"position_in_line": [row.to_dict() for row in find_cells(tr, "position_in_line", top=3)]}
    best = best_feature_match(matches)
    assert (best["unit"], best["visible"]) == (SAT, False)
    path = write_html_report(
        tr, tmp_path / "pinned.html", chars=model.vocab.chars, feature_matches=matches, open_on=best
    )
    sd = f"{tr['layers.0.cell'].double().std(correction=0).item():,.0f}"  # hundreds: c = +-t counts every step
    expected = f"layers.0 cells saturated: sd of c = {sd}, tanh(c) pinned near ±1 in 8 of 8 units; showing output_gate"
    meta = page_meta(path)
    assert meta["note"].startswith(expected)
    assert f"layers.0 #{SAT} for position_in_line (r 1.00;" in meta["note"]
    assert meta["open"] == {**meta["open"], "layer": "layers.0", "unit": SAT, "quantity": "output_gate"}
    with open_report(browser, path) as (page, log):
        note = page.locator("#open-note")
        assert note.is_visible() and note.inner_text().startswith(expected)
        assert note.bounding_box()["height"] > 10 and note.bounding_box()["y"] < 200  # above the text, on screen
        assert page.locator("#quantity option:checked").inner_text() == "output_gate"
        assert page.evaluate("window.lstmReport.state.unit") == SAT
        painted = np.array(page.evaluate("window.lstmReport.painted()"))
        cell = display_codes(tr["layers.0.cell"], "cell").numpy()[SAT]
        assert painted.std() > 3 * cell.std(), (painted.std(), cell.std())  # the cell: one band; its output gate varies
        shot = artifacts_dir(tmp_path) / "html_report_pinned.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert log.errors == [] and log.dialogs == []


def test_pinned_cells_without_a_match_open_on_what_varies_and_a_visible_unit_opens_as_asked(pinned_text_600, tmp_path):
    tr = trace(pinned_model(switching=False), pinned_text_600)
    meta = page_meta(write_html_report(tr, tmp_path / "plain.html"))
    assert meta["note"].startswith("layers.0 cells saturated: sd of c = ")  # its most variable cell is flat too
    assert meta["open"]["quantity"] == "output_gate" and meta["open"]["layer"] == "layers.0"
    # Without the cells, nothing is said: a quantity that varies is what the page opens on anyway.
    meta = page_meta(write_html_report(tr, tmp_path / "gates.html", quantities=["hidden", "output_gate"]))
    assert "note" not in meta and "open" not in meta
    # A unit asked for by name, or that visibly switches, is opened as it is, flat or not.
    meta = page_meta(write_html_report(tr, tmp_path / "asked.html", open_on={"layer": "layers.0", "unit": SAT}))
    assert meta["open"] == {"layer": "layers.0", "unit": SAT} and "note" not in meta


def test_a_flat_match_whose_cell_still_varies_is_opened_with_a_note(pinned_text_600, tmp_path):
    tr = trace(pinned_model(switching=True), pinned_text_600)
    # SWITCH's cell ramps along each line; against chars_to_line_end scored as if flat, it is opened with a note.
    row = {"layer": "layers.0", "unit": SWITCH, "feature": "x", "metric": "pearson", "score": 0.4, "effect": 0.1,
           "visible": False}  # fmt: skip
    meta = page_meta(write_html_report(tr, tmp_path / "flat.html", feature_matches={"x": [row]}, open_on=row))
    assert meta["open"] == {**meta["open"], "unit": SWITCH} and "quantity" not in meta["open"]
    assert meta["note"].startswith("No matched unit visibly switches with its feature; the best, layers.0 #1 for x")
    # Asked to open on it while another match does switch: the note says so, and claims nothing of the others.
    quote = {"layer": "layers.0", "unit": QUOTE, "feature": "inside_quotes", "metric": "auc", "score": 1.0,
             "effect": 1.5, "visible": True}  # fmt: skip
    matches = {"x": [row], "inside_quotes": [quote]}
    meta = page_meta(write_html_report(tr, tmp_path / "asked.html", feature_matches=matches, open_on=row))
    assert meta["note"] == (
        "The unit asked for, layers.0 #1 for x (r 0.40; tanh(c) moves by +0.10 with it, under the 0.5 that shows), "
        "does not visibly switch with its feature."
    )


def test_state_saturation_measures_the_trace():
    values = torch.tensor([[90.0, -80.0, 0.1], [95.0, -85.0, -0.1], [88.0, -90.0, 0.2], [92.0, -70.0, -0.2]])
    acts = {"layers.0.cell": values, "layers.0.hidden": torch.tanh(values) * torch.tensor([0.9, 0.1, 0.5])}
    acts["layers.0.output_gate"] = torch.tensor([[0.5, 0.5, 0.5], [0.6, 0.4, 0.5], [0.5, 0.5, 0.5], [0.4, 0.6, 0.5]])
    tr = Trace(acts, text="abcd", tokens=torch.zeros(4, dtype=torch.long), cell="lstm", num_layers=1)
    found = state_saturation(tr, ["layers.0"])
    assert found.layers[0].sd == pytest.approx(values.double().std(correction=0).item())
    assert (found.layers[0].pinned, found.layers[0].units) == (2, 3)  # the third unit moves near white: not pinned
    # Shown as 2g - 1, the output gate moves by +-0.2 in two units; h only by 0.05-0.1, in one.
    assert found.instead == "output_gate"
    assert found.note() == (
        f"layers.0 cells saturated: sd of c = {found.layers[0].sd:.0f}, tanh(c) pinned near ±1 in 2 of 3 units; "
        "showing output_gate instead"
    )
    assert state_saturation(tr, ["layers.0"], allowed={"cell"}).note().endswith("no other quantity traced to show")
    with pytest.raises(ValueError, match=r"layers \['layers.3'\] are not in this trace; its layers are \['layers.0'\]"):
        state_saturation(tr, ["layers.3"])
