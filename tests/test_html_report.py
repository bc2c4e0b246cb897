"""`write_html_report`: the page is self-contained and safe, and in a real headless Chromium it recolours, shows
tooltips and stays usable on a 20,000-character probe."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from browser import artifacts_dir, backgrounds, launch, open_report, recolour

from lstm_interp import CharLSTM, Trace, trace
from lstm_interp.report import write_html_report
from lstm_interp.report._encode import display_codes, pack, unpack

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
