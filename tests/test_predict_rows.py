"""Read and predict (``lstm_interp/report/predict_rows.js``): the blog's figure in the HTML report and the explorer.

Under each character of a window: the shown unit's colour (the project's scale, colours.js) and the model's top-k
guesses for the next character, shaded green by probability, bold where the guess is what came next. Both views are
opened in a real headless Chromium (tests/browser.py); the guesses are checked against ``torch.topk`` of the trace's
log-probabilities (the report) and against the server's own ``top`` (the explorer).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import artifacts_dir, launch, open_report, recolour
from conftest import TINY_VOCAB, tiny_char_lstm
from matplotlib import colormaps

from lstm_interp import CharLSTM, Trace, trace
from lstm_interp.report import write_html_report
from lstm_interp.report._encode import display_codes

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = (
    'He said, "the door was open" and left.\n'
    "She said {a b} x.y and then she said it again, at length, so that the first line runs past the window.\n"
    'xy "ab" {ba}.\n'
)
WINDOW = 120  # report.js's PREDICT_CHARS
K = 5
SHOTS = Path(__file__).parents[1] / "runs" / "predict_rows"

ROWS_JS = """() => {
  const cells = (row) => [...document.querySelectorAll(`.predict-rows .pr-cell[data-row="${row}"]`)];
  const guesses = [...document.querySelectorAll('.predict-rows .pr-guess')];
  return {
    k: Number(document.querySelector('.predict-rows').dataset.k),
    text: cells('text').map((c) => [Number(c.dataset.i), c.textContent]),
    unit: cells('unit').map((c) => getComputedStyle(c).backgroundColor),
    rows: [...new Set(guesses.map((c) => c.dataset.row))],
    guesses: guesses.map((c) => ({
      i: Number(c.dataset.i), row: Number(c.dataset.row), text: c.textContent,
      bold: Number(getComputedStyle(c).fontWeight) >= 700, background: getComputedStyle(c).backgroundColor,
      ink: getComputedStyle(c).color,
    })),
    labels: [...document.querySelectorAll('.predict-rows .pr-block:first-child .pr-label')].map((l) => l.textContent),
  };
}"""


def colour_at(x: float) -> str:
    """colours.js's colourAt, in Python (as tests/test_serve.py has it)."""
    anchors = [(-1, (222, 84, 70)), (-0.5, (247, 176, 150)), (0, (247, 247, 247)), (0.5, (166, 206, 227)),
               (1, (58, 132, 193))]  # fmt: skip
    j = 1
    while j < len(anchors) - 1 and x > anchors[j][0]:
        j += 1
    (x0, c0), (x1, c1) = anchors[j - 1], anchors[j]
    t = min(1.0, max(0.0, (x - x0) / (x1 - x0)))
    return "rgb({})".format(", ".join(str(int(v + t * (w - v) + 0.5)) for v, w in zip(c0, c1, strict=True)))


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def guess_glyph(c: str) -> str:
    """How predict_rows.js draws a guess: space and newline as visible marks."""
    return {" ": "␣", "\n": "↵", "\t": "⇥"}.get(c, c)


def check_guesses(
    shown: dict[str, Any], expected: list[list[tuple[str, float]] | None], nexts: list[str | None]
) -> int:
    """The guess cells against the expected (char, probability) rows per column; returns how many are bold."""
    by_cell = {(g["i"], g["row"]): g for g in shown["guesses"]}
    bold = 0
    for i, row in enumerate(expected):
        for r in range(shown["k"]):
            cell = by_cell[(i, r + 1)]
            if row is None:
                assert cell["text"] == "" and not cell["bold"], (i, r, cell)
                continue
            char, p = row[r]
            assert cell["text"] == guess_glyph(char), (i, r, cell, row)
            assert cell["bold"] == (char == nexts[i]), (i, r, cell, nexts[i])
            bold += cell["bold"]
            # One green hue, matplotlib's "Greens" (the PNG figure's map); white ink on the dark end.
            want = tuple(round(255 * v) for v in colormaps["Greens"](p)[:3])
            assert max(abs(a - b) for a, b in zip(rgb(cell["background"]), want, strict=True)) <= 4, (cell, p, want)
            red, green, blue = rgb(cell["background"])
            dark = 0.2126 * red + 0.7152 * green + 0.0722 * blue < 0.45 * 255
            assert rgb(cell["ink"]) == ((255, 255, 255) if dark else (0, 0, 0)), cell
    return bold


# ---------------------------------------------------------------------------------------------- the HTML report
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def tiny() -> tuple[CharLSTM, Trace]:
    model = tiny_char_lstm(TEXT, from_text=True, weight_scale=3.0)
    return model, trace(model, TEXT)


def expected_top(model: CharLSTM, tr: Trace, start: int, stop: int) -> list[list[tuple[str, float]]]:
    probs, ids = tr["log_probs"][start:stop].float().exp().topk(K, dim=-1)
    return [
        [(model.vocab.chars[i], p) for i, p in zip(row_ids, row_p, strict=True)]
        for row_ids, row_p in zip(ids.tolist(), probs.tolist(), strict=True)
    ]


def open_predict(page: Any) -> None:
    page.click("#predict summary")
    page.wait_for_function("document.querySelector('.predict-rows, .predict-note') !== null", timeout=30_000)


def test_report_draws_the_blog_figure_under_the_text(browser: Any, tiny: tuple[CharLSTM, Trace], tmp_path: Path):
    model, tr = tiny
    path = write_html_report(tr, tmp_path / "report.html", chars=model.vocab.chars, top_k=K)
    codes = display_codes(tr["layers.0.cell"], "cell")  # (H, T): what the page colours by
    window = codes[:, :WINDOW]
    # A unit that is clearly positive somewhere in the window and clearly negative elsewhere.
    unit = int(((window > 200).any(1) & (window < 55).any(1)).nonzero()[0, 0])
    other = (unit + 1) % codes.shape[0]
    with open_report(browser, path) as (page, log):
        with recolour(page):
            page.evaluate("u => window.lstmReport.select({layer: 'layers.0', quantity: 'cell', unit: u})", unit)
        open_predict(page)
        shown = page.evaluate(ROWS_JS)
        # One column per character of the window (the probe's first 120), k guess rows, the rows labelled.
        assert [i for i, _ in shown["text"]] == list(range(WINDOW))
        assert [t for _, t in shown["text"]] == [{"\n": "↵"}.get(c, c) for c in TEXT[:WINDOW]]
        assert shown["k"] == K and shown["rows"] == [str(r) for r in range(1, K + 1)]
        assert shown["labels"] == ["text", f"unit {unit}", "#1", "#2", "#3", "#4", "#5"]
        assert len(shown["guesses"]) == K * WINDOW
        bold = check_guesses(shown, expected_top(model, tr, 0, WINDOW), [*TEXT[1 : WINDOW + 1]])
        assert bold > 0, "no guess is the next character: the bold check checked nothing"
        assert "bold = the character that came next" in page.locator(".pr-legend").inner_text()

        # The unit row: the report's own colours, blue where the unit is positive and red where negative.
        assert shown["unit"] == [colour_at(b / 127.5 - 1) for b in window[unit].tolist()]
        high, low = int(window[unit].argmax()), int(window[unit].argmin())
        assert window[unit, high] > 200 and window[unit, low] < 55
        r, _, b = rgb(shown["unit"][high])
        assert b > r + 60, f"a positive value ({window[unit, high]}) is not blue: {shown['unit'][high]}"
        r, _, b = rgb(shown["unit"][low])
        assert r > b + 60, f"a negative value ({window[unit, low]}) is not red: {shown['unit'][low]}"
        shot = artifacts_dir(SHOTS) / "report_read_and_predict.png"
        page.screenshot(path=str(shot))

        # Another unit, another quantity: the unit row follows; the guesses stay.
        renders = page.evaluate("window.lstmReport.predictRenders")
        page.fill("#unit", str(other))
        page.wait_for_function(f"window.lstmReport.predictRenders > {renders}")
        moved = page.evaluate(ROWS_JS)
        assert moved["labels"][1] == f"unit {other}"
        assert moved["unit"] == [colour_at(b / 127.5 - 1) for b in codes[other, :WINDOW].tolist()] != shown["unit"]
        assert moved["guesses"] == shown["guesses"]
        renders = page.evaluate("window.lstmReport.predictRenders")
        page.select_option("#quantity", label="forget_gate")
        page.wait_for_function(f"window.lstmReport.predictRenders > {renders}")
        gate = display_codes(tr["layers.0.forget_gate"], "forget_gate")[other, :WINDOW]
        assert page.evaluate(ROWS_JS)["unit"] == [colour_at(b / 127.5 - 1) for b in gate.tolist()]
        assert "forget_gate" in page.locator(".pr-legend").inner_text()

        # A click on a character of the third line reads from that line's start.
        third = TEXT.index("xy")
        renders = page.evaluate("window.lstmReport.predictRenders")
        page.locator("#text span").nth(third + 3).click()
        page.wait_for_function(f"window.lstmReport.predictRenders > {renders}")
        clicked = page.evaluate(ROWS_JS)
        stop = min(len(TEXT), third + WINDOW)
        assert [i for i, _ in clicked["text"]] == list(range(third, stop))
        check_guesses({**clicked, "guesses": [{**g, "i": g["i"] - third} for g in clicked["guesses"]]},
                      expected_top(model, tr, third, stop), [*TEXT[third + 1 : stop], None])  # fmt: skip
        assert page.locator(".pr-mark").get_attribute("data-i") == str(third + 3)
        assert f"characters {third}–{stop - 1}" in page.locator("#predict-caption").inner_text()
        assert page.locator(".predict-rows script, .predict-rows b").count() == 0
        assert log.errors == [] and log.dialogs == []


def test_report_without_predictions_says_so(browser: Any, tiny: tuple[CharLSTM, Trace], tmp_path: Path):
    _, tr = tiny
    path = write_html_report(tr, tmp_path / "report.html")  # no chars: no predictions
    with open_report(browser, path) as (page, log):
        open_predict(page)
        assert page.locator(".predict-rows").count() == 0
        assert "holds no predictions" in page.locator(".predict-note").inner_text()
        assert log.errors == [] and log.dialogs == []


# ---------------------------------------------------------------------------------------------- the explorer
STARTUP_S = 60.0


def _port_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(STARTUP_S):
            raise TimeoutError(f"the server printed no address within {STARTUP_S} s")
    return process.stdout.readline().strip()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CharLSTM]]:
    """``lstm-interp serve`` over a tiny model, in a child process: its address and the model."""
    folder = tmp_path_factory.mktemp("serve")
    model = tiny_char_lstm(weight_scale=3.0)
    model.save_pretrained(folder / "model")
    command = [sys.executable, "-m", "lstm_interp.cli.main", "serve", str(folder / "model"), "--port", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with (folder / "stderr.txt").open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        url = _port_line(process).split(" at ", 1)[1].split()[0].rstrip("/")
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/info", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "stderr.txt").read_text()[-2000:]) from None
                time.sleep(0.1)
        yield url, model
    finally:
        if process.poll() is None:  # by PID: terminate, then kill if it does not go
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def unit_row(codes: list[int], text: str) -> list[str]:
    """The explorer's unit row: the codes of the known characters in turn, a pale grey under the unknown ones."""
    colours = iter([colour_at(b / 127.5 - 1) for b in codes])
    return [next(colours) if c in TINY_VOCAB else "rgb(250, 250, 250)" for c in text]


def typed(page: Any, text: str) -> None:
    """Type ``text`` (replacing what is there) and wait for its read-and-predict rows."""
    page.locator("#input").fill(text)
    page.wait_for_function(
        "t => { const r = window.lstmExplorer.state.result; return r && r.chars.join('') === t && "
        "document.querySelectorAll('#predict .pr-text').length === Math.min(200, [...t].length); }",
        arg=text, timeout=30_000,
    )  # fmt: skip


def test_explorer_draws_the_server_s_guesses_under_the_typed_text(browser: Any, served: tuple[str, CharLSTM]):
    url, model = served
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        with urllib.request.urlopen(f"{url}/predict_rows.js", timeout=10) as response:
            assert "lstmInterpPredictRows" in response.read().decode()
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        page.goto(f"{url}/")
        page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=30_000)
        page.locator("#layer").select_option("layers.1")
        page.locator("#quantity").select_option("cell")
        page.locator("#unit").fill("0")
        text = 'ab "xy" {ab}\nxa.b <y> ba "a b" yy'  # "<" and ">" are outside the vocabulary: skipped
        assert set(text) - set(TINY_VOCAB) == {"<", ">"}
        typed(page, text)
        served_trace = post(f"{url}/api/trace", {"text": text, "layer": "layers.1", "quantity": "cell"})
        known = [c for c in text if c in TINY_VOCAB]
        top = iter(served_trace["top"])
        expected = [next(top) if c in TINY_VOCAB else None for c in text]
        after = iter([*known[1:], None])
        nexts = [next(after) if c in TINY_VOCAB else None for c in text]
        shown = page.evaluate(ROWS_JS)
        assert [t for _, t in shown["text"]] == [{"\n": "↵"}.get(c, c) for c in text]
        assert shown["k"] == K and shown["labels"] == ["text", "unit 0", "#1", "#2", "#3", "#4", "#5"]
        bold = check_guesses(shown, expected, nexts)
        assert bold > 0, "no guess is the next character: the bold check checked nothing"
        codes = display_codes(trace(model, "".join(known))["layers.1.cell"], "cell")
        assert shown["unit"] == unit_row(codes[0].tolist(), text)
        struck = page.evaluate("[...document.querySelectorAll('#predict .pr-text')].map(c => c.style.textDecoration)")
        assert [s.startswith("line-through") for s in struck] == [c not in TINY_VOCAB for c in text]

        # Another unit: the unit row follows.
        renders = page.evaluate("window.lstmExplorer.predictRenders")
        page.locator("#unit").fill("3")
        page.wait_for_function(f"window.lstmExplorer.predictRenders > {renders}")
        assert page.evaluate(ROWS_JS)["labels"][1] == "unit 3"
        assert page.evaluate(ROWS_JS)["unit"] == unit_row(codes[3].tolist(), text)
        page.locator("#predict-section").screenshot(path=str(artifacts_dir(SHOTS) / "explorer_read_and_predict.png"))

        # A long text: the first 200 characters, and the caption says so.
        long = ('ab "xy" {ab} x.y ' * 20)[:300]
        typed(page, long)
        assert "the first 200 of the text's 300 characters" in page.locator("#predict-caption").inner_text()
        assert page.evaluate("document.querySelectorAll('#predict script, #predict img').length") == 0
    finally:
        page.close()
    assert errors == []
