"""The live explorer (``lstm-interp serve``): a real uvicorn server on 127.0.0.1 in a child process, its JSON API
checked against the library, and its page driven in a real headless Chromium.

Two models are served: a tiny random one (``server``), and one with hand-set weights (``planted``) in which a
saturated unit tracks a feature better, by AUC, than a unit that visibly switches, so that the order of the
explorer's feature list and the unit it opens on can be checked against find_cells's ranking rule."""

from __future__ import annotations

import base64
import json
import os
import random
import selectors
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from browser import launch
from conftest import TINY_VOCAB, tiny_char_lstm

from lstm_interp import CharLSTMConfig, CharVocab
from lstm_interp.analysis import CellScore, StateIndex, find_cells, select_cells
from lstm_interp.cli.main import main as cli_main
from lstm_interp.features import FEATURES, ConstantFeatureError, busiest_window, feature_values
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.report._encode import display_codes
from lstm_interp.serve.opening import CORPUS_SCAN_CHARS, PASSAGE_CHARS, PROSE_PROBE, passage_bounds
from lstm_interp.tracing import trace
from lstm_interp.tracing.most_variable_units import flat_units
from lstm_interp.tracing.quantities import display_values

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_TEXT_CHARS = 1_000
MAX_BODY_BYTES = 20_000
STARTUP_S = 60.0
XSS = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>ab "xy"'

# The child: uvicorn on create_app over the saved model, on a socket bound here so that the port is known.
SERVER_SCRIPT = """
import socket, sys
import torch
torch.set_num_threads(1)
import uvicorn
from lstm_interp import load_pretrained
from lstm_interp.serve.app import create_app
model = load_pretrained(sys.argv[1])
corpus = open(sys.argv[2], encoding="utf-8").read()
app = create_app(
    model, corpus_texts=[corpus], thresholds=[0.3, 0.5], max_body_bytes=int(sys.argv[3]),
    max_text_chars=int(sys.argv[4]),
)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@dataclass
class Server:
    url: str
    model: CharLSTM
    corpus: str


def _corpus() -> str:
    rng = random.Random(0)
    words = ['"xy"', "{ab}", "a.b", "yy", "x", '"a b"', "{x}", "ba"]
    # A <script> in the corpus too: its characters are outside the vocabulary, skipped by the index.
    return " ".join(rng.choice(words) for _ in range(600)) + "\n<script>window.pwned=1</script>\n"


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"the server printed no port within {timeout} s")
    return process.stdout.readline().strip()


def _stop(process: subprocess.Popen[str]) -> None:
    # By PID: terminate, then kill if it does not go.
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_for_info(url: str, process: subprocess.Popen[str], stderr: Path) -> None:
    """Until the server answers ``/api/info`` and its corpora are indexed (``lstm-interp serve`` indexes them in the
    background, answering at once)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {stderr.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/info", timeout=5) as response:
                if response.status == 200 and json.loads(response.read()).get("indexing") is None:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/api/info did not answer, with the corpora indexed, within {STARTUP_S} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    model = tiny_char_lstm(weight_scale=3.0)
    model.save_pretrained(folder / "model")
    corpus = _corpus()
    (folder / "corpus.txt").write_text(corpus, encoding="utf-8")
    stderr = folder / "stderr.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(folder / "model"), str(folder / "corpus.txt"),
             str(MAX_BODY_BYTES), str(MAX_TEXT_CHARS)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )  # fmt: skip
    try:
        port = int(_first_line(process, STARTUP_S))
        url = f"http://127.0.0.1:{port}"
        _wait_for_info(url, process, stderr)
        yield Server(url, model, corpus)
    finally:
        _stop(process)


def request(url: str, body: Any = None, *, raw: bytes | None = None, chunked: bool = False) -> tuple[int, Any]:
    """(status, decoded JSON) of a GET (no body) or a JSON POST."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if chunked and data is not None:
        # An iterable body and no Content-Length: http.client sends it chunked, so only the read size can tell.
        payload: Any = iter([data[i : i + 4096] for i in range(0, len(data), 4096)])
        headers["Transfer-Encoding"] = "chunked"
    else:
        payload = data
    req = urllib.request.Request(url, data=payload, headers=headers, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def expected_codes(model: CharLSTM, text: str, layer: str, quantity: str) -> torch.Tensor:
    return display_codes(trace(model, text)[f"{layer}.{quantity}"], quantity)


def decoded(result: dict[str, Any]) -> torch.Tensor:
    codes = torch.frombuffer(bytearray(base64.b64decode(result["values"])), dtype=torch.uint8)
    return codes.reshape(result["hidden_size"], result["steps"])


# ------------------------------------------------------------------------------------ the planted model
# A real 2-layer CharLSTM whose weights are all zero but for six units, set by hand (the identity embedding makes a
# weight on input column k fire exactly on character k; a pre-activation of +-30 makes a gate an exact switch, as in
# tests/test_find_cells.py). Layer 0 keeps the state:
#   QUOTE: c = +1 inside quotes, -1 after a closing one (toggled on each '"', reading its own sign back through h);
#   PAREN: c = -(parenthesis depth); E_UNIT: c = +1 on an 'e', -1 elsewhere. Each shows h = tanh(c) to layer 1.
# Layer 1's forget gates read them (every other gate of layer 1 is constant: its cell stays 0):
#   SWITCH: pre = 3 q + 3 (e + 1) (q, e = h / tanh(1), so +-1): about +-0.9 on the displayed scale inside / outside
#     quotes, but also high on an 'e' outside them: it visibly switches, with an AUC below 1;
#   PINNED: pre = 10 + 2 q: 0.99999 inside quotes, 0.9993 outside: AUC exactly 1, and one flat band;
#   PINNED_PAREN: pre = 10 + 2 depth-ish: AUC 1 for inside_parens, flat; no unit switches with parentheses here.
# So for the forget gates find_cells lists SWITCH before PINNED for inside_quotes, and the explorer must list
# inside_quotes (first unit visible) before inside_parens (first unit flat, though its AUC is the higher).
GATE_ROWS = {"input": 0, "forget": 1, "candidate": 2, "output": 3}  # PyTorch's row blocks: i, f, g, o
PLANTED_HIDDEN = 8
QUOTE, PAREN, E_UNIT = 5, 3, 6
SWITCH, PINNED, PINNED_PAREN = 2, 4, 7
TANH_1 = 0.7615941559557649


def planted_corpus(lines: int = 60, seed: int = 0) -> str:
    """Lines of narration, half with a quotation and some with a parenthesis, neither spanning a line."""
    rng = random.Random(seed)
    words = ["the", "prince", "said", "nothing", "then", "looked", "at", "me", "and", "we", "went", "out", "there",
             "were", "letters", "on", "the", "table"]  # fmt: skip

    def phrase(low: int, high: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))

    out = []
    for _ in range(lines):
        parts = [phrase(2, 6)]
        if rng.random() < 0.5:
            parts.append(f'"{phrase(1, 5)},"')
        if rng.random() < 0.3:
            parts.append(f"({phrase(1, 4)})")
        out.append(" ".join([*parts, phrase(1, 4) + "."]))
    return "\n".join(out) + "\n"


def planted_model(text: str) -> CharLSTM:
    """The hand-set model above, over the characters of ``text`` (its head's weights are random, seed 0)."""
    vocab = CharVocab.from_text(text)
    size = len(vocab)
    torch.manual_seed(0)
    config = CharLSTMConfig(vocab_size=size, hidden_size=PLANTED_HIDDEN, embedding_size=size, num_layers=2)
    model = CharLSTM(config, vocab).eval()
    layer0, layer1 = model.layers
    on, off = 30.0, -30.0

    def row(gate: str, unit: int) -> int:
        return GATE_ROWS[gate] * PLANTED_HIDDEN + unit

    def char(c: str) -> int:
        return vocab.char_to_id(c)

    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(size))
        for layer in (layer0, layer1):
            for weights in (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0):
                weights.zero_()
        w0, b0, w1, b1 = layer0.weight_ih_l0, layer0.bias_ih_l0, layer1.weight_ih_l0, layer1.bias_ih_l0
        b0[row("forget", QUOTE)], w0[row("forget", QUOTE), char('"')] = on, -60.0
        b0[row("input", QUOTE)], w0[row("input", QUOTE), char('"')] = off, 60.0
        b0[row("candidate", QUOTE)], layer0.weight_hh_l0[row("candidate", QUOTE), QUOTE] = on, -100.0
        b0[row("output", QUOTE)] = on
        b0[row("forget", PAREN)], b0[row("input", PAREN)], b0[row("output", PAREN)] = on, off, on
        w0[row("input", PAREN), char("(")] = w0[row("input", PAREN), char(")")] = 60.0
        w0[row("candidate", PAREN), char("(")], w0[row("candidate", PAREN), char(")")] = -30.0, 30.0
        b0[row("forget", E_UNIT)], b0[row("input", E_UNIT)], b0[row("output", E_UNIT)] = off, on, on
        b0[row("candidate", E_UNIT)], w0[row("candidate", E_UNIT), char("e")] = off, 60.0
        b1[row("forget", SWITCH)] = 3.0
        w1[row("forget", SWITCH), QUOTE] = w1[row("forget", SWITCH), E_UNIT] = 3.0 / TANH_1
        b1[row("forget", PINNED)], w1[row("forget", PINNED), QUOTE] = 10.0, 2.0 / TANH_1
        b1[row("forget", PINNED_PAREN)], w1[row("forget", PINNED_PAREN), PAREN] = 10.0, -2.0 / TANH_1
    return model


def _cli_server(folder: Path, corpus: Path | None = None) -> tuple[subprocess.Popen[str], str, Path]:
    """``lstm-interp serve folder/model --port 0 [--corpus corpus]``: the process, its URL and its stderr file."""
    command = [sys.executable, "-m", "lstm_interp.cli.main", "serve", str(folder / "model"), "--port", "0"]
    command += ["--corpus", str(corpus)] if corpus is not None else []
    stderr = folder / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        url = _first_line(process, STARTUP_S).split(" at ", 1)[1].split()[0].rstrip("/")
        _wait_for_info(url, process, stderr)
    except BaseException:
        _stop(process)
        raise
    return process, url, stderr


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The planted model served by the CLI over its own corpus."""
    folder = tmp_path_factory.mktemp("planted")
    corpus = planted_corpus()
    model = planted_model(corpus + PROSE_PROBE)
    model.save_pretrained(folder / "model")
    (folder / "corpus.txt").write_text(corpus, encoding="utf-8")
    process, url, _ = _cli_server(folder, folder / "corpus.txt")
    try:
        yield Server(url, model, corpus)
    finally:
        _stop(process)


# ----------------------------------------------------------------------- the ranking rule, by the library
def _known(model: CharLSTM, text: str) -> str:
    return "".join(c for c in text if c in model.vocab)


def _rank(row: CellScore) -> tuple[int, float]:
    """A feature's place in the list, by its first unit: switching units that beat their controls (or have none),
    then other switching units, then flat ones; each by strength."""
    tier = 2 if not row.visible else 1 if row.controls and not row.beats_controls else 0
    return tier, -row.strength


Panel = list[tuple[str, list[CellScore]]]


def library_panel(model: CharLSTM, text: str, quantity: str = "cell", top: int = 3) -> Panel:
    """The explorer's feature list for ``text`` by the library alone: find_cells (its own controls) per feature
    that varies on the known characters, the features by their first unit."""
    known = _known(model, text)
    tr = trace(model, known)
    panel = []
    for name in FEATURES:
        try:
            feature_values(name, known)
        except ConstantFeatureError:
            continue
        panel.append((name, list(find_cells(tr, name, quantity, top).rows)))
    panel.sort(key=lambda item: _rank(item[1][0]))  # stable: ties keep the registry's order
    return panel


def expected_opening(model: CharLSTM, corpus: str) -> dict[str, Any]:
    """What the explorer should open on over ``corpus`` (opening.py's docstring), from library calls."""
    head = corpus[:CORPUS_SCAN_CHARS]
    ranked = []
    for name in FEATURES:
        try:
            window = busiest_window(feature_values(name, head), PASSAGE_CHARS)
        except ConstantFeatureError:
            continue
        span = passage_bounds(head, window.start, PASSAGE_CHARS)
        try:
            first = find_cells(trace(model, _known(model, head[span[0] : span[1]])), name, "cell", 1)[0]
        except ConstantFeatureError:
            continue
        ranked.append((_rank(first), span, name))
    ranked.sort(key=lambda item: item[0])
    candidates = [(span, name) for _, span, name in ranked] + [(passage_bounds(head, 0, PASSAGE_CHARS), None)]
    for span, name in candidates:
        panel = library_panel(model, corpus[span[0] : span[1]])
        if panel and panel[0][1][0].visible:
            row = panel[0][1][0]
            return {"span": list(span), "window_feature": name, "layer": row.layer, "unit": row.unit,
                    "feature": panel[0][0], "row": row}  # fmt: skip
    span, name = candidates[0]  # no unit switches with a feature anywhere: the unit that varies most, not a flat one
    tr = trace(model, _known(model, corpus[span[0] : span[1]]))
    units = []
    for i, layer in enumerate(tr.layer_names):
        shown = display_values(tr[f"{layer}.cell"], "cell")
        flat, variance = flat_units(shown), shown.var(dim=0, correction=0)
        units += [(bool(flat[u]), -float(variance[u]), i, u) for u in range(shown.shape[1])]
    _, _, i, unit = min(units)
    return {"span": list(span), "window_feature": name, "layer": tr.layer_names[i], "unit": unit, "feature": None,
            "row": None}  # fmt: skip


# ---------------------------------------------------------------------------------------------- the API


def test_info(server: Server) -> None:
    status, info = request(f"{server.url}/api/info")
    assert status == 200
    assert info["layers"] == ["layers.0", "layers.1"]
    assert info["hidden_size"] == 8 and info["vocab"] == TINY_VOCAB
    assert info["quantities"] == ["input_gate", "forget_gate", "cell_candidate", "output_gate", "cell", "hidden"]
    assert info["corpora"] == ["corpus 0"] and info["thresholds"] == [0.3, 0.5]
    known = sum(c in TINY_VOCAB for c in server.corpus)
    assert info["corpus_steps"] == [known] and known < len(server.corpus)
    assert "inside_quotes" in info["features"]


@pytest.mark.parametrize(("layer", "quantity"), [("layers.1", "cell"), ("layers.0", "forget_gate")])
def test_trace_equals_the_library(server: Server, layer: str, quantity: str) -> None:
    text = 'a "xy" {ab}\nb.y'
    status, result = request(f"{server.url}/api/trace", {"text": text, "layer": layer, "quantity": quantity})
    assert status == 200, result
    assert result["chars"] == list(text) and result["unknown"] == []
    assert torch.equal(decoded(result), expected_codes(server.model, text, layer, quantity))
    log_probs = trace(server.model, text)["log_probs"]
    assert len(result["top"]) == len(text) and all(len(row) == 5 for row in result["top"])
    best = [TINY_VOCAB[i] for i in log_probs.argmax(dim=-1).tolist()]
    assert [row[0][0] for row in result["top"]] == best
    assert [row[0][1] for row in result["top"]] == pytest.approx(log_probs.exp().max(dim=-1).values.tolist(), abs=1e-4)
    assert result["server_ms"] > 0


def test_a_null_layer_is_the_default(server: Server) -> None:
    status, result = request(f"{server.url}/api/trace", {"text": "ab xy", "layer": None})
    assert status == 200, result
    assert result["layer"] == "layers.1"
    assert torch.equal(decoded(result), expected_codes(server.model, "ab xy", "layers.1", "cell"))


def test_unknown_characters_are_reported_and_skipped(server: Server) -> None:
    text = "ab<Q>xy"
    status, result = request(f"{server.url}/api/trace", {"text": text, "layer": "layers.1", "quantity": "cell"})
    assert status == 200, result
    assert result["unknown"] == [2, 3, 4] and result["chars"] == list(text) and result["steps"] == 4
    assert result["unknown_chars"] == ["<", ">", "Q"]
    assert torch.equal(decoded(result), expected_codes(server.model, "abxy", "layers.1", "cell"))


def test_script_in_the_text_comes_back_as_text(server: Server) -> None:
    status, result = request(f"{server.url}/api/trace", {"text": XSS})
    assert status == 200
    assert "".join(result["chars"]) == XSS


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("trace", {"text": ""}, 400, "empty"),
        ("trace", {"text": 5}, 400, "`text` must be a string"),
        ("trace", {"text": "ab", "layer": "layers.7"}, 400, "unknown layer 'layers.7'"),
        ("trace", {"text": "ab", "layer": ["layers.0"]}, 400, "unknown layer ['layers.0']"),
        ("trace", {"text": "ab", "quantity": "gates"}, 400, "unknown quantity 'gates'"),
        ("trace", {"text": "a" * (MAX_TEXT_CHARS + 1)}, 413, f"the limit is {MAX_TEXT_CHARS} characters"),
        ("select", {"text": "abxy", "span": [2, 2]}, 400, "is empty"),
        ("select", {"text": "abxy", "span": [2, 9]}, 400, "outside the text"),
        ("select", {"text": "abxy", "span": "1-2"}, 400, "`span` must be [start, end]"),
        ("select", {"text": "a<<y", "span": [1, 3]}, 400, "outside the vocabulary"),
        ("select", {"text": "abxy", "span": [1, 3], "quantity": "forget_gate", "threshold": 1.5}, 400, "0..1"),
        ("select", {"text": "abxy", "span": [1, 3], "threshold": "high"}, 400, "finite number"),
        ("select", {"text": "abxy", "span": [1, 3], "before": -1}, 400, "`before` must be an integer >= 0"),
        ("match", {"cells": []}, 400, "empty selection"),
        ("match", {"cells": [["layers.0", 99]]}, 400, "got 99"),
        ("match", {"cells": [["layers.0", 1]], "threshold": 0.4}, 400, "indexed at threshold [0.3, 0.5], not 0.4"),
        ("select", {"corpus": 3, "span": [1, 3]}, 400, "`corpus` must be an integer 0 .. 0, got 3"),
        ("select", {"corpus": 0, "span": [1, 10**6]}, 400, "outside corpus 0"),
        ("select", {"corpus": 0, "span": [1, 3], "threshold": 0.2}, 400, "not 0.2"),
        ("trace", {"text": "ab", "interventions": [{"op": "zap", "name": "layers.0.cell", "units": [1]}]}, 400,
         "`op` must be one of ['ablate', 'clamp', 'scale'], got 'zap'"),
        ("trace", {"text": "ab", "interventions": [{"op": "ablate", "name": "layers.5.cell", "units": [1]}]}, 400,
         "unknown `name` 'layers.5.cell'"),
        ("trace", {"text": "ab", "interventions": [{"op": "ablate", "name": "layers.0.cell", "units": [8]}]}, 400,
         "interventions[0]: a unit must be an integer 0 .. 7, got 8"),
        ("trace", {"text": "ab", "interventions": [{"op": "clamp", "name": "layers.0.cell", "units": [1]}]}, 400,
         "interventions[0]: `value` must be a finite number, got None"),
        ("trace", {"text": "ab", "interventions": [{"op": "clamp", "name": "layers.0.input_gate", "units": [1],
                                                    "value": 3}]}, 400,
         "interventions[0]: `value` of Clamp('layers.0.input_gate'): 'input_gate' is a sigmoid gate, which only takes "
         "values in [0, 1]; got 3"),
        ("trace", {"text": "ab", "interventions": "ablate"}, 400, "`interventions` must be a list"),
        ("trace", {"text": "ab<", "interventions": [{"op": "ablate", "name": "layers.0.cell", "units": [1],
                                                     "span": [2, 3]}]}, 400, "holds only characters outside"),
        ("trace", {"text": "ab", "interventions": [{"op": "ablate", "name": "layers.0.cell", "units": [1],
                                                    "span": [1, 5]}]}, 400,
         "interventions[0]: the selection [1, 5] lies"),
        ("features", {"text": "ab", "top": 0}, 400, "`top` must be an integer 1 .. 20, got 0"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(
    server: Server, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    got, result = request(f"{server.url}/api/{path}", body)
    assert got == status, result
    assert message in result["error"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_refused(server: Server, chunked: bool) -> None:
    raw = json.dumps({"text": "a" * MAX_BODY_BYTES}).encode()
    status, result = request(f"{server.url}/api/trace", raw=raw, chunked=chunked)
    assert status == 413
    assert (
        f"limit of {MAX_BODY_BYTES} bytes" in result["error"] or f"limit is {MAX_BODY_BYTES} bytes" in result["error"]
    )


def raw_request(url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, bytes]:
    """(status, body) of a request with exactly these headers (Host, Origin, Content-Type) over real HTTP."""
    req = urllib.request.Request(url, data=body, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_only_the_server_s_own_host_names_are_served(server: Server, planted: Server) -> None:
    """DNS rebinding: a page of evil.example whose name points at 127.0.0.1 still sends its own Host."""
    port = server.url.rsplit(":", 1)[1]
    body = json.dumps({"text": "ab"}).encode()
    json_type = {"Content-Type": "application/json"}
    for app in (server, planted):  # create_app's default, and the CLI's hosts for its bound address
        app_port = app.url.rsplit(":", 1)[1]
        status, _ = raw_request(f"{app.url}/api/trace", {"Host": f"evil.example:{app_port}", **json_type}, body)
        assert status == 400, app.url
        status, _ = raw_request(f"{app.url}/", {"Host": f"evil.example:{app_port}"})
        assert status == 400, app.url
        for name in ("localhost", "127.0.0.1"):
            status, _ = raw_request(f"{app.url}/api/info", {"Host": f"{name}:{app_port}"})
            assert status == 200, (app.url, name)
    status, _ = raw_request(f"{server.url}/api/info", {"Host": f"127.0.0.1.evil.example:{port}"})
    assert status == 400


def test_posts_must_be_json_from_the_server_s_own_origin(server: Server) -> None:
    """A cross-site text/plain or form POST needs no CORS preflight, so the server refuses it itself."""
    body = json.dumps({"text": "ab"}).encode()
    own = server.url.rstrip("/")
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {} if media is None else {"Content-Type": media}
        status, answer = raw_request(f"{server.url}/api/trace", headers, body)
        assert status == 415, media
        assert "Content-Type: application/json" in json.loads(answer)["error"]
    headers = {"Content-Type": "application/json", "Origin": "http://evil.example"}
    status, answer = raw_request(f"{server.url}/api/trace", headers, body)
    assert status == 403 and "'http://evil.example'" in json.loads(answer)["error"]
    for origin in (own, None):  # the page's own fetches, and scripts that send no Origin
        headers = {"Content-Type": "application/json; charset=utf-8", **({"Origin": origin} if origin else {})}
        status, answer = raw_request(f"{server.url}/api/trace", headers, body)
        assert status == 200, (origin, answer)


def test_deep_json_and_cells_of_the_wrong_form_get_clear_errors(server: Server) -> None:
    status, result = request(f"{server.url}/api/trace", raw=b"[" * 3_000 + b"]" * 3_000)
    assert status == 400 and "nested too deeply" in result["error"]
    status, result = request(f"{server.url}/api/match", {"cells": "layers.1:3"})
    assert status == 400 and "must be a list of [layer, unit] pairs" in result["error"]
    assert "layers.1:3" in result["error"]


def test_allowed_hosts_follow_the_bound_address() -> None:
    from lstm_interp.serve.app import allowed_hosts, create_app

    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts("::1") == ["[::1]", "127.0.0.1", "localhost"]
    assert allowed_hosts("0.0.0.0", ["lab.example.org"]) == ["0.0.0.0", "lab.example.org"]
    assert allowed_hosts("192.168.1.5") == ["192.168.1.5"]
    with pytest.raises(ValueError, match="`allowed_hosts` must be a non-empty list of host names, got 'localhost'"):
        create_app(tiny_char_lstm(), allowed_hosts="localhost")
    with pytest.raises(ValueError, match="got \\[\\]"):
        create_app(tiny_char_lstm(), allowed_hosts=[])


def test_not_json_and_no_files(server: Server) -> None:
    status, result = request(f"{server.url}/api/trace", raw=b"{text")
    assert status == 400 and "not JSON" in result["error"]
    for path in ("/page.html", "/../pyproject.toml", "/static/page.js", "/lstm_interp/serve/app.py"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.url}{path}", timeout=10)
        assert err.value.code == 404, path
    with urllib.request.urlopen(f"{server.url}/", timeout=10) as response:
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_parallel_requests_are_all_right(server: Server, tmp_path: Path) -> None:
    """40 requests at once, of four kinds (plain and intervened traces, features, matches): each answer is the
    library's for its own request."""
    from lstm_interp.interventions import Ablate, run_with_interventions

    rng = random.Random(1)
    texts = ["".join(rng.choice(TINY_VOCAB) for _ in range(rng.randint(5, 60))) for _ in range(10)]
    ablate = [{"op": "ablate", "name": "layers.0.cell", "units": [2]}]
    index = StateIndex.build(server.model, server.corpus, tmp_path / "index", on_unknown="skip")
    cells = [[("layers.1", u)] for u in range(8)] + [[("layers.0", 1), ("layers.1", 5)], [("layers.0", 7)]]
    jobs = [("trace", {"text": t}) for t in texts] + [("trace", {"text": t, "interventions": ablate}) for t in texts]
    jobs += [("features", {"text": t, "top": 2}) for t in texts]
    jobs += [("match", {"cells": [list(c) for c in cs], "top": 5}) for cs in cells]
    rng.shuffle(jobs)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda job: request(f"{server.url}/api/{job[0]}", job[1]), jobs))
    for (kind, body), (status, result) in zip(jobs, answers, strict=True):
        assert status == 200, result
        if kind == "trace":
            text = body["text"]
            assert "".join(result["chars"]) == text
            if "interventions" in body:
                ran = run_with_interventions(server.model, text, [Ablate("layers.0.cell", [2])])
                assert torch.equal(decoded(result), display_codes(ran["layers.1.cell"], "cell"))
            else:
                assert torch.equal(decoded(result), expected_codes(server.model, text, "layers.1", "cell"))
        elif kind == "features":
            listed = {row["feature"] for row in result["features"]} | set(result["constant"])
            assert len(listed) == len(result["features"]) + len(result["constant"])
        else:
            want = index.match([tuple(c) for c in body["cells"]], 5)
            assert [(m["start"], m["end"]) for m in result["matches"]] == [(m.start, m.end) for m in want]


def _selectable_span(model: CharLSTM, text: str, threshold: float) -> tuple[int, int, list[tuple[str, int]]]:
    """A span of ``text`` (at least 2 characters) that selects some cell of the last layer."""
    tr = trace(model, text)
    for length in (2, 3, 4, 5):
        for start in range(1, len(text) - length):
            cells = select_cells(tr, (start, start + length), threshold, 1, 0, layer="layers.1")
            if cells:
                return start, start + length, cells
    raise AssertionError(f"no span of {text!r} selects a cell at threshold {threshold}")


BRUSHED = 'ab "xy" {ab} yy "a b" x.y ba'


def test_select_and_match(server: Server, tmp_path: Path) -> None:
    start, end, cells = _selectable_span(server.model, BRUSHED, 0.3)
    body = {"text": BRUSHED, "span": [start, end], "threshold": 0.3, "before": 1, "after": 0, "layer": "layers.1"}
    status, selected = request(f"{server.url}/api/select", body)
    assert status == 200, selected
    assert selected["cells"] == [list(cell) for cell in cells]
    status, found = request(f"{server.url}/api/match", {"cells": selected["cells"], "top": 10})
    assert status == 200, found
    # The same as a StateIndex of the corpus built here (the server skips the corpus's unknown characters too).
    index = StateIndex.build(server.model, server.corpus, tmp_path / "index", on_unknown="skip")
    want = index.match(cells, 10)
    assert [(m["start"], m["end"], m["intersection"], m["union"]) for m in found["matches"]] == [
        (m.start, m.end, m.intersection, m.union) for m in want
    ]
    assert found["matches"], "the corpus has no match for the selected cells"
    first = found["matches"][0]
    assert (first["before"], first["span"], first["after"]) == index.passage(want[0], 40)
    assert first["jaccard"] == pytest.approx(want[0].jaccard)


def test_select_in_the_corpus_and_the_pattern_of_each_match(server: Server, tmp_path: Path) -> None:
    """A span of the corpus is selected from its index; each match carries the selected cells' bits over its
    passage, and the threshold picks the index."""
    index = StateIndex.build(server.model, server.corpus, tmp_path / "index", threshold=0.5, on_unknown="skip")
    for start in range(1, 200):
        cells = index.select((start, start + 3), 1, 0)
        if cells:
            break
    else:
        raise AssertionError("no 3-step span of the corpus selects a cell at threshold 0.5")
    body = {"corpus": 0, "span": [start, start + 3], "threshold": 0.5, "before": 1, "after": 0}
    status, selected = request(f"{server.url}/api/select", body)
    assert status == 200, selected
    assert selected["cells"] == [list(c) for c in cells] and selected["corpus"] == 0
    status, found = request(f"{server.url}/api/match", {"cells": selected["cells"], "top": 5, "threshold": 0.5})
    assert status == 200, found
    assert found["threshold"] == 0.5 and found["pattern_cells"] == selected["cells"]
    want = index.match(cells, 5)
    assert [(m["start"], m["end"]) for m in found["matches"]] == [(m.start, m.end) for m in want]
    for m in found["matches"]:
        stop = m["end"] + len(m["after"])
        assert m["offset"] == m["start"] - len(m["before"])
        rows = [index.bits(f"{layer}.cell", [u], m["offset"], stop)[0] for layer, u in cells]
        assert m["pattern"] == ["".join("1" if b else "0" for b in row) for row in rows]
    assert any(m["intersection"] == len(cells) for m in found["matches"])


def test_interventions_change_the_predictions(server: Server) -> None:
    from lstm_interp.interventions import Ablate, Clamp, run_with_interventions

    text = 'ab "xy" {ab} x.y'
    specs = [{"op": "ablate", "name": "layers.1.cell", "units": [3]},
             {"op": "clamp", "name": "layers.0.hidden", "units": [1, 2], "value": 0.9}]  # fmt: skip
    body = {"text": text, "layer": "layers.1", "quantity": "cell", "interventions": specs}
    status, result = request(f"{server.url}/api/trace", body)
    assert status == 200, result
    ran = run_with_interventions(
        server.model, text, [Ablate("layers.1.cell", [3]), Clamp("layers.0.hidden", [1, 2], 0.9)]
    )
    assert torch.equal(decoded(result), display_codes(ran["layers.1.cell"], "cell"))
    assert set(decoded(result)[3].tolist()) == set(display_codes(torch.zeros(1, 1), "cell").flatten().tolist())
    ids = server.model.vocab.encode(text)
    loss = -ran["log_probs"][:-1].gather(1, ids[1:, None]).mean().item()
    plain = trace(server.model, text)["log_probs"]
    assert result["loss"] == pytest.approx(loss, abs=1e-4)
    assert result["base_loss"] == pytest.approx(-plain[:-1].gather(1, ids[1:, None]).mean().item(), abs=1e-4)
    assert result["loss"] != pytest.approx(result["base_loss"], abs=1e-3)
    assert [row[0][0] for row in result["top"]] == [TINY_VOCAB[i] for i in ran["log_probs"].argmax(-1).tolist()]
    assert [row[0][0] for row in result["base_top"]] == [TINY_VOCAB[i] for i in plain.argmax(-1).tolist()]
    status, unchanged = request(f"{server.url}/api/trace", {"text": text})
    assert "base_top" not in unchanged and unchanged["interventions"] == 0


def test_an_intervention_over_a_span_acts_at_its_characters_only(server: Server) -> None:
    from lstm_interp.interventions import Clamp, run_with_interventions

    text = 'ab "x<y" {ab} x.y'  # '<' is outside the vocabulary: characters 6.. are steps 5..
    spec = {"op": "clamp", "name": "layers.1.cell", "units": [3], "value": 1.5, "span": [7, 12]}
    status, result = request(f"{server.url}/api/trace", {"text": text, "interventions": [spec]})
    assert status == 200, result
    known = text.replace("<", "")
    ran = run_with_interventions(server.model, known, [Clamp("layers.1.cell", [3], 1.5, steps=slice(6, 11))])
    assert torch.equal(decoded(result), display_codes(ran["layers.1.cell"], "cell"))
    plain = display_codes(trace(server.model, known)["layers.1.cell"], "cell")
    assert torch.equal(decoded(result)[:, :6], plain[:, :6])  # before the span: untouched
    assert not torch.equal(decoded(result)[3, 6:11], plain[3, 6:11])


def test_features_list_the_units_that_track_them(server: Server) -> None:
    text = 'ab "xy" {ab} yy "a b" x\nb.y {a "b"}'
    status, found = request(f"{server.url}/api/features", {"text": text, "quantity": "cell", "top": 2})
    assert status == 200, found
    tr = trace(server.model, text)
    listed = {row["feature"]: row for row in found["features"]}
    assert "inside_quotes" in listed and "inside_comment" in found["constant"]
    assert set(listed) | set(found["constant"]) == set(FEATURES)
    for name, row in listed.items():
        want = find_cells(tr, name, "cell", 2)  # find_cells's own order, against the feature's controls
        assert [(u["layer"], u["unit"]) for u in row["units"]] == [(r.layer, r.unit) for r in want.rows], name
        assert row["units"][0]["score"] == pytest.approx(want.rows[0].score, abs=1e-6)
        assert row["units"][0]["effect"] == pytest.approx(want.rows[0].effect, abs=1e-6)
        assert [u["visible"] for u in row["units"]] == [r.visible for r in want.rows]
        assert row["controls"] == [c.control for c in want.rows[0].controls]
        assert ("beats_controls" in row["units"][0]) == bool(row["controls"])
    # The features by their first unit: switching (and beating the controls) first, then strength.
    panel = library_panel(server.model, text, top=2)
    assert [row["feature"] for row in found["features"]] == [name for name, _ in panel]


def test_the_initial_state_is_the_library_s_choice(server: Server) -> None:
    """The page's opening over the tiny random model's corpus: where no unit visibly switches with any feature (its
    cells are saturated), the passage of the best-tracked feature and the unit that varies most, never a flat one."""
    status, initial = request(f"{server.url}/api/initial")
    assert status == 200, initial
    want = expected_opening(server.model, server.corpus)
    assert {k: initial[k] for k in ("span", "window_feature", "layer", "unit", "feature")} == {
        k: want[k] for k in ("span", "window_feature", "layer", "unit", "feature")
    }
    start, end = initial["span"]
    assert initial["source"] == "corpus" and initial["corpus"] == 0 and initial["corpus_name"] == "corpus 0"
    assert initial["text"] == server.corpus[start:end] and PASSAGE_CHARS * 2 // 3 <= end - start <= PASSAGE_CHARS
    assert initial["quantity"] == "cell"
    # The corpus is one long line: the passage starts at a word, and ends at one, inside the feature's busy window.
    assert (start == 0 or server.corpus[start - 1] == " ") and server.corpus[end] in " \n"
    busy = busiest_window(feature_values(initial["window_feature"], server.corpus), PASSAGE_CHARS)
    assert busy.start < end and start < busy.stop
    if initial["row"] is None:  # this model: no feature's unit switches visibly, so the most varied unit is shown
        assert initial["feature"] is None and "varies most" in initial["reason"]
        shown = display_values(trace(server.model, _known(server.model, initial["text"]))[f"{initial['layer']}.cell"],
                               "cell")  # fmt: skip
        assert not flat_units(shown)[initial["unit"]]
    else:
        assert initial["row"]["visible"] and initial["row"]["unit"] == initial["unit"]


def test_the_planted_model_opens_on_its_quote_cell(planted: Server) -> None:
    status, initial = request(f"{planted.url}/api/initial")
    assert status == 200, initial
    want = expected_opening(planted.model, planted.corpus)
    assert {k: initial[k] for k in ("span", "window_feature", "layer", "unit", "feature")} == {
        k: want[k] for k in ("span", "window_feature", "layer", "unit", "feature")
    }
    # The quote unit (AUC 1 for the quotations, and it switches), not the paren unit, nor a layer-1 unit (constant).
    assert (initial["layer"], initial["unit"]) == ("layers.0", QUOTE)
    assert initial["feature"] in ("inside_string_literal", "inside_quotes")
    row = initial["row"]
    assert row["visible"] and row["score"] == pytest.approx(want["row"].score) and row["score"] == 1.0
    assert row["effect"] == pytest.approx(want["row"].effect) and row["effect"] > 1.0
    start, end = initial["span"]
    assert initial["text"] == planted.corpus[start:end]
    assert start == 0 or planted.corpus[start - 1] == "\n"  # lines here: it opens at one's start
    busy = busiest_window(feature_values(initial["window_feature"], planted.corpus), PASSAGE_CHARS)
    assert busy.start < end and start < busy.stop
    assert initial["reason"].startswith(f"Opened on corpus.txt, characters {start}..{end}")


def test_a_switching_unit_is_listed_before_a_saturated_one_with_the_higher_auc(planted: Server) -> None:
    """The planted forget gates: PINNED tracks the quotations at AUC 1 but is one flat band; SWITCH, at a lower AUC,
    switches. inside_parens has only a flat unit, at AUC 1. The list must lead with SWITCH and inside_quotes."""
    status, found = request(f"{planted.url}/api/features", {"text": PROSE_PROBE, "quantity": "forget_gate", "top": 3})
    assert status == 200, found
    features = {row["feature"]: row for row in found["features"]}
    quotes = features["inside_quotes"]
    units = [(u["layer"], u["unit"]) for u in quotes["units"]]
    assert units[0] == ("layers.1", SWITCH) and ("layers.1", PINNED) in units[1:]
    switch, pinned = quotes["units"][0], quotes["units"][units.index(("layers.1", PINNED))]
    assert pinned["score"] == 1.0 > switch["score"] > 0.9
    assert pinned["visible"] is False and abs(pinned["effect"]) < 0.01
    assert switch["visible"] is True and switch["effect"] > 1.0
    assert quotes["controls"] == ["dialogue_line"] and switch["beats_controls"] is True
    paren = features["inside_parens"]["units"][0]
    assert (paren["layer"], paren["unit"]) == ("layers.1", PINNED_PAREN) and paren["visible"] is False
    assert paren["strength"] > switch["strength"]  # by strength alone inside_parens would come first
    order = [row["feature"] for row in found["features"]]
    assert order.index("inside_quotes") < order.index("inside_parens")
    panel = library_panel(planted.model, PROSE_PROBE, "forget_gate")
    assert order == [name for name, _ in panel]
    for name, rows in panel:
        got = [(u["layer"], u["unit"], u["visible"]) for u in features[name]["units"]]
        assert got == [(r.layer, r.unit, r.visible) for r in rows], name


def test_without_a_corpus_it_opens_on_a_probe_or_what_the_model_samples() -> None:
    from lstm_interp.serve.explorer import Explorer
    from lstm_interp.serve.opening import initial_state

    model = planted_model(planted_corpus() + PROSE_PROBE)
    state = initial_state(Explorer(model, [], [0.3], 1000))
    assert state["source"] == "probe" and state["text"] == PROSE_PROBE and state["span"] is None
    name, rows = library_panel(model, PROSE_PROBE)[0]
    assert (state["feature"], state["layer"], state["unit"]) == (name, rows[0].layer, rows[0].unit)
    assert (state["layer"], state["unit"]) == ("layers.0", QUOTE) and state["row"]["visible"]
    # The tiny vocabulary knows too few of the probes' characters: the model's own sample, which it can encode.
    tiny = tiny_char_lstm(weight_scale=3.0)
    state = initial_state(Explorer(tiny, [], [0.3], 1000))
    assert state["source"] == "sample" and state["text"] == tiny.generate("\n", 300, seed=0, include_prompt=False)
    name, rows = library_panel(tiny, state["text"])[0]
    assert rows[0].visible and (state["feature"], state["layer"], state["unit"]) == (name, rows[0].layer, rows[0].unit)
    # A text limit below the passage's length is kept.
    assert len(initial_state(Explorer(model, [planted_corpus()], [0.3], 120))["text"]) <= 120


def test_passage_bounds_start_at_a_line_or_word_start() -> None:
    text = "short one\n" + "a long line of words " * 20 + "\nnext line here and more words\n" + "x" * 50
    assert passage_bounds(text, 4, 40) == (0, 37)  # from its line's start; cut at a space, not inside "line"
    assert text[37] == " " and text[:37].endswith("words a long")
    deep = text.index("of words", 300)  # far into the long line: its start is too far back, the next line is near
    begin, _ = passage_bounds(text, deep, 300)
    assert text[begin - 1] == "\n" and text[begin:].startswith("next line")
    begin, end = passage_bounds(text, 200, 40)  # no line start near: the start of the word holding character 200
    assert text[begin - 1] == " " and begin <= 200 < end and text[end] == " "
    assert passage_bounds(text, len(text) - 10, 40)[1] == len(text)  # the text's end
    with pytest.raises(ValueError, match=r"`start` must lie in the text's characters 0 \.\. "):
        passage_bounds(text, len(text) + 1, 40)


def test_a_gru_is_explored_on_its_hidden_state(tmp_path: Path) -> None:
    """The explorer's work on a GRU (no cell state, no cell gates), without a server: trace, features, select in
    the text and the corpus, match, and an intervention on a gate."""
    from lstm_interp.interventions import Clamp, run_with_interventions
    from lstm_interp.serve.explorer import ApiError, Explorer

    model = tiny_char_lstm(cell="gru", weight_scale=3.0, seed=4)
    corpus = _corpus()
    explorer = Explorer(model, [corpus], [0.3], 1000)
    assert explorer.info()["quantities"] == ["reset_gate", "update_gate", "new_gate", "hidden"]
    text = 'ab "xy" {ab} yy "a b" x.y ba'
    result = explorer.trace_response({"text": text, "layer": "layers.0", "quantity": "hidden"})
    assert torch.equal(decoded(result), expected_codes(model, text, "layers.0", "hidden"))
    clamp = [{"op": "clamp", "name": "layers.1.update_gate", "units": [2], "value": 0.9}]
    result = explorer.trace_response({"text": text, "quantity": "update_gate", "interventions": clamp})
    ran = run_with_interventions(model, text, [Clamp("layers.1.update_gate", [2], 0.9)])
    assert torch.equal(decoded(result), display_codes(ran["layers.1.update_gate"], "update_gate"))
    assert len(set(decoded(result)[2].tolist())) == 1  # held at 0.9 at every step
    assert explorer.features_response({"text": text})["features"]
    index = explorer.indexes[0][0.3]
    for start in range(1, 300):
        cells = index.select((start, start + 2))
        if cells:
            break
    selected = explorer.select_response({"corpus": 0, "span": [start, start + 2]})
    assert selected["cells"] == [list(c) for c in cells] and selected["quantity"] == "hidden"
    found = explorer.match_response({"cells": selected["cells"], "top": 5})
    assert [(m["start"], m["end"]) for m in found["matches"]] == [(m.start, m.end) for m in index.match(cells, 5)]
    with pytest.raises(ApiError, match="unknown quantity 'cell'"):
        explorer.trace_response({"text": text, "quantity": "cell"})
    from lstm_interp.serve.opening import initial_state

    opening = initial_state(explorer)  # on the GRU's hidden state, from its corpus
    assert opening["quantity"] == "hidden" and opening["source"] == "corpus" and opening["text"]


def test_a_clamp_over_the_brushed_span_only(page: Any, server: Server) -> None:
    from lstm_interp.interventions import Clamp, run_with_interventions

    text = 'ab "xy" {ab} yy "a b" x.y'
    page.locator("#input").fill(text)
    _traced(page, text)
    page.locator("#unit").fill("5")
    page.locator("#clamp-value").fill("1.5")
    page.locator("#over-span").check()
    page.locator("#clamp").click()  # nothing brushed yet: refused, nothing added
    assert "brush a span" in (page.locator("#status").text_content() or "")
    assert page.locator("#interventions .chip").count() == 0
    _drag(page, page.locator("#text span").nth(8), page.locator("#text span").nth(12))
    traces = page.evaluate("window.lstmExplorer.traces")
    page.locator("#clamp").click()
    page.wait_for_function("n => window.lstmExplorer.traces > n", arg=traces, timeout=20_000)
    assert "clamp layers.1.cell[5] = 1.5 over 8..13" in (page.locator("#interventions").text_content() or "")
    ran = run_with_interventions(server.model, text, [Clamp("layers.1.cell", [5], 1.5, steps=slice(8, 13))])
    codes = display_codes(ran["layers.1.cell"], "cell")[5]
    shown = _backgrounds(page)
    assert shown == [colour_at(b / 127.5 - 1) for b in codes.tolist()]
    assert shown[:8] == expected_backgrounds(server.model, text, 5)[:8]


def test_markup_in_a_corpus_passage_is_shown_as_text(browser: Any, tmp_path: Path) -> None:
    """A model that knows '<', '>' and '/' matches into a corpus passage holding a <script>: the page shows it as
    characters and runs nothing."""
    markup = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'
    corpus = (f'ab "xy" {markup} yy "ab" ' * 12)
    model = tiny_char_lstm(corpus, from_text=True, weight_scale=3.0, seed=1)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "corpus.txt").write_text(corpus, encoding="utf-8")
    command = [sys.executable, "-m", "lstm_interp.cli.main", "serve", str(tmp_path / "model"), "--port", "0",
               "--corpus", str(tmp_path / "corpus.txt")]  # fmt: skip
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=os.environ)
    try:
        url = _first_line(process, STARTUP_S).split(" at ", 1)[1].split()[0].rstrip("/")
        _wait_for_info(url, process, stderr)
        start = corpus.index("<script>")
        body = {"corpus": 0, "span": [start, start + 8], "before": 0, "layer": "layers.1"}
        _, selected = request(f"{url}/api/select", body)
        assert selected["cells"], "no cell is on over '<script>': the test checks nothing"
        _, found = request(f"{url}/api/match", {"cells": selected["cells"], "top": 50, "context": 80})
        assert any("<script>" in m["before"] + m["span"] + m["after"] for m in found["matches"])
        page = browser.new_page()
        page.goto(f"{url}/")
        page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=20_000)
        # The corpus's start typed: traced from the same zero state, it selects what the corpus's index does.
        page.locator("#layer").select_option("layers.1")  # the layer selected above: not the page's opening one
        page.locator("#input").fill(corpus[: start + 30])
        _traced(page, corpus[: start + 30])  # not its opening passage's trace, which came before
        page.locator("#before").fill("0")  # first: typing into a field clears the page's selection
        _drag(page, page.locator("#text span").nth(start), page.locator("#text span").nth(start + 7))
        page.locator("#select").click()
        page.wait_for_function(
            "() => /match\\(es\\)|no cell|error/.test(document.querySelector('#select-status').className + "
            "document.querySelector('#select-status').textContent)"
        )
        shown = page.locator("#select-status").text_content() or ""
        assert "match(es)" in shown, shown
        passages = page.evaluate("[...document.querySelectorAll('#matches .passage')].map(p => p.textContent)")
        assert any("<script>" in p for p in passages)
        assert page.evaluate("document.querySelectorAll('#matches script, #matches img, #text script').length") == 0
        assert page.evaluate("typeof window.pwned") == "undefined"
        page.close()
    finally:
        _stop(process)


def test_cli_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--help"]) == 0
    assert cli_main(["serve", "runs/no-such-model.ckpt"]) == 2
    assert cli_main(["serve", "novel", "--port", "70000"]) == 2
    capsys.readouterr()
    assert cli_main(["serve", "novel", "--corpus", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt' does not exist" in capsys.readouterr().err
    tiny_char_lstm().save_pretrained(tmp_path / "model")
    (tmp_path / "latin1.txt").write_bytes('ab "xy" caf\xe9 {ab}\n'.encode("latin-1"))
    assert cli_main(["serve", str(tmp_path / "model"), "--corpus", str(tmp_path / "latin1.txt")]) == 2
    err = capsys.readouterr().err
    assert "latin1.txt' is not UTF-8: byte 0xe9 at byte offset 11" in err
    (tmp_path / "corpus.txt").write_text('ab "xy"\n', encoding="utf-8")
    for thresholds, message in ((["0.3", "0.3"], "distinct"), (["nan"], "finite number")):
        command = ["serve", str(tmp_path / "model"), "--corpus", str(tmp_path / "corpus.txt"), "--threshold"]
        assert cli_main([*command, *thresholds]) == 2
        assert message in capsys.readouterr().err


def test_create_app_checks_its_arguments() -> None:
    from lstm_interp.serve import create_app

    model = tiny_char_lstm()
    with pytest.raises(ValueError, match=r"`thresholds` must be a non-empty list of numbers, got \[\]"):
        create_app(model, thresholds=[])
    with pytest.raises(ValueError, match="`max_text_chars` must be a positive integer, got 0"):
        create_app(model, max_text_chars=0)
    with pytest.raises(TypeError, match="got one str"):
        create_app(model, corpus_texts="ab")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_app(model, corpus_files=["no-such-corpus.txt"])


# ---------------------------------------------------------------------------------------------- the page


def colour_at(x: float) -> str:
    """The page's colourAt (the report's table), in Python."""
    anchors = [(-1, (222, 84, 70)), (-0.5, (247, 176, 150)), (0, (247, 247, 247)), (0.5, (166, 206, 227)),
               (1, (58, 132, 193))]  # fmt: skip
    j = 1
    while j < len(anchors) - 1 and x > anchors[j][0]:
        j += 1
    (x0, c0), (x1, c1) = anchors[j - 1], anchors[j]
    t = min(1.0, max(0.0, (x - x0) / (x1 - x0)))
    # JavaScript's Math.round rounds halves up.
    return "rgb({})".format(", ".join(str(int(v + t * (w - v) + 0.5)) for v, w in zip(c0, c1, strict=True)))


def _traced(page: Any, text: str) -> None:
    page.wait_for_function(
        "t => { const r = window.lstmExplorer.state.result; return r && r.chars.join('') === t; }", arg=text,
        timeout=20_000,
    )  # fmt: skip


def _backgrounds(page: Any) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#text span')].map(s => s.style.backgroundColor)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as chromium:
        yield chromium


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """The explorer's page, once it has opened on its initial passage; and the list its errors go to."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}/")
    page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=30_000)
    return page, errors


@pytest.fixture
def opened(browser: Any, server: Server) -> Iterator[Any]:
    """The page as it opens."""
    page, errors = open_page(browser, server.url)
    yield page
    page.close()
    assert errors == []


@pytest.fixture
def page(opened: Any) -> Any:
    """The page from a blank slate, what the tests that type start from: no text, layers.1's cell state, unit 0."""
    opened.locator("#input").fill("")
    opened.locator("#layer").select_option("layers.1")
    opened.locator("#quantity").select_option("cell")
    opened.locator("#unit").fill("0")
    opened.wait_for_function("() => window.lstmExplorer.state.result === null && !document.querySelector('#text span')")
    return opened


def expected_backgrounds(model: CharLSTM, text: str, unit: int, layer: str = "layers.1") -> list[str]:
    codes = expected_codes(model, text, layer, "cell")[unit]
    return [colour_at(b / 127.5 - 1) for b in codes.tolist()]


def test_typing_colours_the_characters(page: Any, server: Server) -> None:
    page.locator("#input").press_sequentially('ab "xy"', delay=20)
    _traced(page, 'ab "xy"')
    assert _backgrounds(page) == expected_backgrounds(server.model, 'ab "xy"', 0)
    page.locator("#input").press_sequentially(" {ab}", delay=20)
    text = 'ab "xy" {ab}'
    _traced(page, text)
    assert _backgrounds(page) == expected_backgrounds(server.model, text, 0)
    renders = page.evaluate("window.lstmExplorer.renders")
    page.locator("#unit").fill("3")
    page.wait_for_function("n => window.lstmExplorer.renders > n", arg=renders)
    shown = _backgrounds(page)
    assert shown == expected_backgrounds(server.model, text, 3) and len(set(shown)) > 1
    page.locator("#text span").nth(4).hover()
    tip = page.locator("#tip").text_content() or ""
    assert "tanh(layers.1.cell[3]) = " in tip and "next:" in tip


def test_typing_at_the_end_fetches_only_the_last_steps_and_shows_the_full_trace(page: Any, server: Server) -> None:
    """Each keystroke's response carries the steps from the changed chunk on (the page's session), and what the
    page shows after splicing them is byte for byte a full retrace: the codes, the top-5 rows and the loss."""
    text = ('ab "xy" {ab}\n' * 8)[:100]
    page.locator("#input").fill(text)
    _traced(page, text)
    for extra in 'x{"a':
        text += extra
        page.locator("#input").press_sequentially(extra)
        _traced(page, text)
    assert page.evaluate("window.lstmExplorer.partialTraces") >= 3
    held = page.evaluate("[Array.from(window.lstmExplorer.state.codes), window.lstmExplorer.state.result]")
    status, whole = request(f"{server.url}/api/trace", {"text": text, "layer": "layers.1", "quantity": "cell"})
    assert status == 200 and whole["from"] == 0
    assert held[0] == decoded(whole).flatten().tolist()
    assert held[1]["top"] == whole["top"] and held[1]["loss"] == whole["loss"]
    assert _backgrounds(page) == [colour_at(b / 127.5 - 1) for b in decoded(whole)[0].tolist()]


def test_the_page_opens_on_a_passage_with_its_unit_selected(opened: Any, server: Server) -> None:
    _, initial = request(f"{server.url}/api/initial")
    text, layer, unit = initial["text"], initial["layer"], initial["unit"]
    assert opened.locator("#input").input_value() == text != ""
    assert opened.locator("#layer").input_value() == layer and opened.locator("#quantity").input_value() == "cell"
    assert opened.locator("#unit").input_value() == str(unit)
    _traced(opened, text)
    shown = [b for b, c in zip(_backgrounds(opened), text, strict=True) if c in TINY_VOCAB]
    assert shown == expected_backgrounds(server.model, _known(server.model, text), unit, layer)
    assert len(set(shown)) > 2
    assert opened.locator("#opened").text_content() == initial["reason"]
    opened.wait_for_function("() => document.querySelectorAll('#features li').length > 0", timeout=20_000)
    # Edited, the text is the reader's own: the line saying where it came from goes.
    opened.locator("#input").press("Control+End")
    opened.locator("#input").press_sequentially(" x", delay=20)
    _traced(opened, text + " x")
    assert opened.locator("#opened").text_content() == ""


def test_the_planted_page_opens_on_the_quote_cell_and_lists_switching_units_first(
    browser: Any, planted: Server
) -> None:
    _, initial = request(f"{planted.url}/api/initial")
    page, errors = open_page(browser, planted.url)
    try:
        text = initial["text"]
        assert page.locator("#input").input_value() == text
        assert page.locator("#layer").input_value() == "layers.0" and page.locator("#unit").input_value() == str(QUOTE)
        _traced(page, text)
        shown = _backgrounds(page)
        assert shown == expected_backgrounds(planted.model, text, QUOTE, "layers.0") and len(set(shown)) > 1
        assert colour_at(1.0) != colour_at(-1.0)
        # The feature list's first unit is the one shown, and marked.
        page.wait_for_function("() => document.querySelector('#features button.current') !== null", timeout=20_000)
        assert page.locator("#features li").first.get_attribute("data-feature") == initial["feature"]
        assert page.evaluate(
            "document.querySelector('#features li button') === document.querySelector('#features button.current')"
        )
        # The forget gates: the switching unit before the saturated one with the higher AUC, marked flat.
        page.locator("#quantity").select_option("forget_gate")
        page.wait_for_function(
            "() => document.querySelector('#features-status').textContent.includes('(forget_gate)')", timeout=20_000
        )
        _, found = request(f"{planted.url}/api/features", {"text": text, "quantity": "forget_gate", "top": 3})
        names = page.evaluate("[...document.querySelectorAll('#features li')].map(li => li.dataset.feature)")
        assert names == [row["feature"] for row in found["features"]]
        assert names.index("inside_quotes") < names.index("inside_parens")
        buttons = page.evaluate(
            "[...document.querySelectorAll('#features li[data-feature=inside_quotes] button')]"
            ".map(b => [b.textContent, b.className])"
        )
        assert buttons[0][0].startswith(f"layers.1:{SWITCH} ") and " Δ+1." in buttons[0][0]
        assert "flat" not in buttons[0][0] + buttons[0][1]
        pinned = [b for b in buttons if b[0].startswith(f"layers.1:{PINNED} ")]
        assert pinned and pinned[0][0].endswith(" flat") and "flat" in pinned[0][1].split()
    finally:
        page.close()
    assert errors == []


def test_a_script_is_shown_never_run(page: Any) -> None:
    page.locator("#input").fill(XSS)
    _traced(page, XSS)
    assert page.locator("#text").text_content() == XSS
    assert page.evaluate("document.querySelectorAll('#text script, #text img').length") == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    unknown = page.evaluate("[...document.querySelectorAll('#text span.unknown')].map(s => s.textContent).join('')")
    assert unknown.startswith("<img") and "<script>" in unknown


def _drag(page: Any, first_char: Any, last_char: Any) -> None:
    """Brush from the first character to the last with the mouse, as a user does."""
    first, last = first_char.bounding_box(), last_char.bounding_box()
    assert first is not None and last is not None
    page.mouse.move(first["x"] + 1, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(last["x"] + last["width"] - 1, last["y"] + last["height"] / 2, steps=5)
    page.mouse.up()


def test_brushing_a_span_lists_matches(page: Any, server: Server) -> None:
    start, end, cells = _selectable_span(server.model, BRUSHED, 0.3)
    _, found = request(f"{server.url}/api/match", {"cells": [list(c) for c in cells], "top": 50})
    page.locator("#input").fill(BRUSHED)
    _traced(page, BRUSHED)
    _drag(page, page.locator("#text span").nth(start), page.locator("#text span").nth(end - 1))
    page.locator("#select").click()
    page.wait_for_function("() => document.querySelectorAll('#matches li').length > 0", timeout=20_000)
    status = page.locator("#select-status").text_content() or ""
    assert f"span {start}..{end}" in status
    assert page.locator("#matches li").count() == len(found["matches"])
    spans = page.evaluate(
        "[...document.querySelectorAll('#matches li')].map(li => [...li.querySelectorAll('span.in')]"
        ".map(s => s.textContent).join(''))"
    )
    assert spans == [m["span"] for m in found["matches"]]
    # Each passage is shaded by how many selected cells are on at each character, and carries their pattern.
    first = found["matches"][0]
    shades = page.evaluate(
        "[...document.querySelectorAll('#matches li:first-child .passage span')].map(s => s.style.backgroundColor)"
    )
    on = [sum(row[j] == "1" for row in first["pattern"]) for j in range(len(shades))]
    assert shades == [colour_at(k / len(cells)) for k in on] and len(set(shades)) > 1
    assert page.locator("#matches li").first.locator("canvas").count() == 1

    # Brushing inside a matched passage selects from the corpus (its index) and matches again.
    first_step = first["start"] - first["offset"]
    passage = page.locator("#matches li").first.locator(".passage span")
    _drag(page, passage.nth(first_step), passage.nth(first_step + 1))
    want = request(f"{server.url}/api/select", {
        "corpus": 0, "span": [first["start"], first["start"] + 2], "threshold": 0.3, "layer": "layers.1"})[1]
    page.locator("#select").click()
    label = f"corpus 0 {first['start']}..{first['start'] + 2}"
    page.wait_for_function("t => document.querySelector('#select-status').textContent.startsWith(t)", arg=label)
    page.wait_for_function("() => / match\\(es\\)|no cell/.test(document.querySelector('#select-status').textContent)")
    shown = page.locator("#select-status").text_content() or ""
    assert (f"{len(want['cells'])} cell(s)" in shown) if want["cells"] else ("no cell" in shown)


def test_a_feature_unit_is_shown_on_click_and_an_ablation_updates_the_predictions(page: Any, server: Server) -> None:
    from lstm_interp.interventions import Ablate, run_with_interventions

    text = 'ab "xy" {ab} yy "a b" x.y'
    page.locator("#input").fill(text)
    _traced(page, text)
    page.wait_for_function("() => document.querySelectorAll('#features button').length > 0", timeout=20_000)
    _, found = request(f"{server.url}/api/features", {"text": text, "quantity": "cell", "top": 3})
    names = page.evaluate("[...document.querySelectorAll('#features li')].map(li => li.dataset.feature)")
    assert names == [row["feature"] for row in found["features"]]
    # Click a unit of the best-tracked feature's list: the page shows that layer and unit.
    best = found["features"][0]["units"][1]
    page.locator("#features li >> nth=0 >> button >> nth=1").click()
    page.wait_for_function(
        "([l, u]) => document.querySelector('#layer').value === l && document.querySelector('#unit').value === u",
        arg=[best["layer"], str(best["unit"])],
    )
    page.wait_for_function("() => document.querySelector('#features button.current') !== null")
    page.wait_for_function("l => window.lstmExplorer.state.result.layer === l", arg=best["layer"])
    assert _backgrounds(page) == expected_backgrounds(server.model, text, best["unit"], best["layer"])

    # Ablate the shown unit: a chip appears, the unit turns white, and the loss and predictions are of the new run.
    traces = page.evaluate("window.lstmExplorer.traces")
    page.locator("#ablate").click()
    page.wait_for_function("n => window.lstmExplorer.traces > n", arg=traces, timeout=20_000)
    name = f"{best['layer']}.cell"
    assert f"ablate {name}[{best['unit']}] = 0" in (page.locator("#interventions").text_content() or "")
    ran = run_with_interventions(server.model, text, [Ablate(name, [best["unit"]])])
    codes = display_codes(ran[name], "cell")[best["unit"]]
    assert _backgrounds(page) == [colour_at(b / 127.5 - 1) for b in codes.tolist()]
    status = page.locator("#status").text_content() or ""
    assert "→" in status and "under 1 intervention(s)" in status
    page.locator("#text span").nth(3).hover()
    tip = page.locator("#tip").text_content() or ""
    top = TINY_VOCAB[int(ran["log_probs"][3].argmax())]
    assert f"next: {json.dumps(top)}" in tip and "without interventions:" in tip
    # Removing it restores the trained model.
    traces = page.evaluate("window.lstmExplorer.traces")
    page.locator("#interventions .chip button").click()
    page.wait_for_function("n => window.lstmExplorer.traces > n", arg=traces, timeout=20_000)
    assert _backgrounds(page) == expected_backgrounds(server.model, text, best["unit"], best["layer"])
    assert "→" not in (page.locator("#status").text_content() or "")


def test_cli_serves_on_a_free_port(tmp_path: Path) -> None:
    tiny_char_lstm().save_pretrained(tmp_path / "model")
    (tmp_path / "corpus.txt").write_text('ab "xy" {ab}\n' * 20, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lstm_interp.cli.main", "serve", str(tmp_path / "model"), "--port", "0",
               "--corpus", str(tmp_path / "corpus.txt")]  # fmt: skip
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        line = _first_line(process, STARTUP_S)
        assert line.startswith(f"Serving {tmp_path / 'model'} at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split()[0].rstrip("/")
        assert not url.endswith(":0")
        _wait_for_info(url, process, stderr)
        status, info = request(f"{url}/api/info")
        assert status == 200 and info["corpora"] == ["corpus.txt"]
        assert info["corpus_steps"] == [len('ab "xy" {ab}\n') * 20]
        assert "indexing 1 corpus file(s) at threshold 0.3" in stderr.read_text()
        assert "not loopback" not in stderr.read_text()
    finally:
        _stop(process)
