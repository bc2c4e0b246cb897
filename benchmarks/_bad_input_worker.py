"""The worker of ``bad_input_cases.py``: runs every case against the ``lstm_interp`` on ``PYTHONPATH``.

Prints one JSON line per case: ``{"group", "case", "outcome", "detail"}``. Written against the public API and CLI
that both sides have, so that the same case runs before and after the fixes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import lstm_interp
from lstm_interp.config import CharLSTMConfig
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.vocab import CharVocab

CRASHES = (RecursionError, MemoryError)
CASES: list[tuple[str, str, Callable[[Path], tuple[str, str]]]] = []
CLI = "import sys; from lstm_interp.cli.main import main; sys.exit(main(sys.argv[1:]))"
TEXT = 'He said "yes" and (she) left. "No," he said {x}.\n' * 40


class Hang(Exception):
    pass


def case(group: str, name: str) -> Callable:
    def register(fn: Callable[[Path], tuple[str, str]]) -> Callable:
        CASES.append((group, name, fn))
        return fn

    return register


def raised(fn: Callable[[], Any], clear: str, check: Callable[[Any], str | None] | None = None) -> tuple[str, str]:
    """The outcome of calling ``fn``, which should raise an error whose message matches ``clear``; if it returns,
    ``check(result)`` says what was wrong with running (or None: a legitimate use, handled)."""
    try:
        result = fn()
    except CRASHES as err:
        return "traceback", f"{type(err).__name__}"
    except Hang:
        raise
    except Exception as err:  # classifying every error is the point
        message = f"{type(err).__name__}: {err}"[:300]
        return ("handled" if re.search(clear, str(err), re.I) else "refused unclearly"), message
    problem = check(result) if check is not None else "no error"
    return ("ran anyway", problem) if problem else ("handled", "handled")


def cli(args: list[str], clear: str, timeout: float = 60) -> tuple[str, str]:
    """The outcome of ``lstm-interp ARGS``, which should exit with an error matching ``clear``."""
    try:
        done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hang", f"still running after {timeout:g} s"
    tail = done.stderr.strip().splitlines()[-1:] or [""]
    if "Traceback (most recent call last)" in done.stderr:
        return "traceback", tail[0][:300]
    if done.returncode == 0:
        return "ran anyway", "exit status 0"
    return ("handled" if re.search(clear, done.stderr, re.I) else "refused unclearly"), tail[0][:300]


def tiny_model(hidden: int = 8) -> CharLSTM:
    torch.manual_seed(0)
    vocab = CharVocab.from_text(TEXT)
    config = CharLSTMConfig(vocab_size=len(vocab), cell="lstm", num_layers=2, hidden_size=hidden, embedding_size=4)
    return CharLSTM(config, vocab).eval()


# ------------------------------------------------------------------------------------------------------ data loss
def rerun_keeps(tmp: Path, first: list[str], again: list[str] | None = None) -> tuple[str, str]:
    out = tmp / "out"
    done = subprocess.run([sys.executable, "-c", CLI, *first, "--out", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        return "refused unclearly", f"the first run failed: {done.stderr.strip()[-200:]}"
    (out / "notes.txt").write_text("my notes")
    outcome = cli([*(again or first), "--out", str(out)], r"notes\.txt")
    if not (out / "notes.txt").exists():
        return "data loss", "notes.txt deleted by the rerun"
    return outcome


@case("data loss", "ablate rerun into a folder with the user's notes.txt")
def _(tmp: Path) -> tuple[str, str]:
    return rerun_keeps(tmp, ["ablate", str(tmp / "model"), str(tmp / "text.txt"), "--unit", "layers.1:0",
                             "--target", '"', "--random", "3"])  # fmt: skip


@case("data loss", "analyze rerun into a folder with the user's notes.txt")
def _(tmp: Path) -> tuple[str, str]:
    return rerun_keeps(tmp, ["analyze", str(tmp / "model"), str(tmp / "text.txt")])


@case("data loss", "save_pretrained into a thesis folder with a planted manifest.json")
def _(tmp: Path) -> tuple[str, str]:
    folder = tmp / "thesis"
    tiny_model().save_pretrained(folder)
    (folder / "thesis.tex").write_text("years of work")
    outcome = raised(lambda: tiny_model().save_pretrained(folder), r"thesis\.tex")
    return outcome if (folder / "thesis.tex").exists() else ("data loss", "thesis.tex deleted")


# ------------------------------------------------------------------------------------------------------- security
@contextlib.contextmanager
def server(tmp: Path) -> Iterator[int]:
    import uvicorn

    from lstm_interp.serve.app import create_app

    app = create_app(tiny_model(hidden=16), corpus_texts=[TEXT * 5])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        thread.join(10)


def request(port: int, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    base = {"Content-Type": "application/json"} if body is not None else {}
    conn.request("POST" if body is not None else "GET", path, body=body, headers=base | (headers or {}))
    response = conn.getresponse()
    return response.status, response.read().decode("utf-8", "replace")


def http_outcome(status: int, body: str, clear: str) -> tuple[str, str]:
    if status >= 500:
        return "traceback", f"{status} {body[:200]}"
    if status < 400:
        return "ran anyway", f"{status}"
    return ("handled" if re.search(clear, body, re.I) else "refused unclearly"), f"{status} {body[:200]}"


SERVE_CASES = [
    ("Host: evil.example on /api/match (DNS rebinding)", "/api/match", {"cells": [["layers.1", 0]], "top": 3},
     {"Host": "evil.example:8000"}, r"host"),
    ("text/plain POST (no CORS preflight)", "/api/trace", {"text": "ab", "layer": "layers.0"},
     {"Content-Type": "text/plain"}, r"application/json"),
    ("cross-site Origin", "/api/trace", {"text": "ab", "layer": "layers.0"},
     {"Origin": "http://evil.example"}, r"origin"),
    ("32 cells x top 1000 x context 1000 on /api/match", "/api/match",
     {"cells": [[f"layers.{u % 2}", u // 2] for u in range(32)], "top": 1000, "context": 1000}, {},
     r"limit|budget|cost|too"),
    ("32 gate clamps over 5,000 characters", "/api/trace",
     {"text": ("ab " * 2000)[:5000], "layer": "layers.0", "interventions": [
         {"op": "clamp", "name": f"layers.{i % 2}.forget_gate", "units": [i % 8], "value": 0.5} for i in range(32)]},
     {}, r"limit|budget|cost|too"),
    ("JSON nested 20,000 deep (40 kB, under the body limit)", "/api/trace", None, {}, r"nested"),
    ("a lone surrogate in the text", "/api/trace", None, {}, r"surrogate.*(offset|character|position)"),
    ("scale factor 1e300", "/api/trace",
     {"text": TEXT[:200], "layer": "layers.0", "interventions": [
         {"op": "scale", "name": "layers.0.cell", "units": [0, 1, 2], "factor": 1e300}]}, {}, r"factor"),
    ("cells as a string", "/api/match", {"cells": "layers.1:0", "top": 3}, {}, r"list|\["),
]


def serve_case(name: str, path: str, data: Any, headers: dict, clear: str) -> Callable:
    def run(tmp: Path) -> tuple[str, str]:
        with server(tmp) as port:
            if name.startswith("JSON nested"):
                body = ("[" * 20_000 + "]" * 20_000).encode()
                body = b'{"text": ' + body + b"}"
            elif name.startswith("a lone surrogate"):
                body = b'{"text": "ab \\ud800 ab", "layer": "layers.0"}'
            else:
                body = json.dumps(data).encode()
            began = time.perf_counter()
            status, text = request(port, path, body, headers)
            seconds = time.perf_counter() - began
        if name.startswith("32 ") and status == 200:
            # It ran: fine if it did so within the server's default deadline (10 s), else it held the model's thread.
            verdict = "handled" if seconds < 10 else "ran anyway"
            return verdict, f"200 after {seconds:.1f} s"
        return http_outcome(status, text, clear)

    return run


for _name, _path, _data, _headers, _clear in SERVE_CASES:
    case("serve", _name)(serve_case(_name, _path, _data, _headers, _clear))


@case("serve", "a client disconnecting mid-body")
def _(tmp: Path) -> tuple[str, str]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    with server(tmp) as port:
        for name in ("uvicorn.error", "uvicorn", "starlette"):  # after uvicorn's own logging set-up
            logging.getLogger(name).addHandler(handler)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /api/trace HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"text\": \"ab")  # fmt: skip
        time.sleep(1.0)
        status, _ = request(port, "/api/info")
    tracebacks = [r for r in records if r.exc_info]
    if tracebacks:
        return "traceback", f"{tracebacks[0].getMessage()[:100]}: {tracebacks[0].exc_info[0].__name__}"
    return ("handled", "no traceback logged") if status == 200 else ("traceback", f"then {status}")


@case("serve", "Ctrl-C on lstm-interp serve")
def _(tmp: Path) -> tuple[str, str]:
    proc = subprocess.Popen([sys.executable, "-c", CLI, "serve", str(tmp / "model"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    line = proc.stdout.readline()
    if "Serving" not in line:
        proc.kill()
        return "refused unclearly", f"did not start: {line!r}"
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "hang", "did not exit on Ctrl-C"
    return ("traceback", err.strip().splitlines()[-1][:200]) if "Traceback" in err else ("handled", "clean")


@case("serve", "index folders left by a SIGKILLed server, then a restart")
def _(tmp: Path) -> tuple[str, str]:
    env = dict(os.environ, TMPDIR=str(tmp / "t"))
    (tmp / "t").mkdir()
    (tmp / "corpus.txt").write_text(TEXT)
    outcome: tuple[str, str] = ("handled", "removed on restart")
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-c", CLI, "serve", str(tmp / "model"), "--port", "0", "--corpus",
                                 str(tmp / "corpus.txt")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env)  # fmt: skip
        proc.stdout.readline()
        time.sleep(0.5)
        proc.kill()
        proc.wait()
        left = sorted(p.name for p in (tmp / "t").glob("lstm-interp-serve-*"))
        if attempt == 1 and len(left) > 1:
            outcome = ("ran anyway", f"{len(left)} index folders left in TMPDIR after a kill and a restart")
    return outcome


@case("security", "StateIndex.open with '../' in index.json's names")
def _(tmp: Path) -> tuple[str, str]:
    from lstm_interp.analysis.state_index import StateIndex

    index = StateIndex.build(tiny_model(), TEXT, tmp / "index")
    header = json.loads((index.path / "index.json").read_text())
    header["names"] = ["../../outside"]
    header["widths"] = {"../../outside": 8}
    (index.path / "index.json").write_text(json.dumps(header))
    return raised(lambda: StateIndex.open(tmp / "index", verify=True), r"outside|not activation names|\.\.")


# ------------------------------------------------------------------------------------------------ ablate and steer
ABLATE = ["ablate", "{model}", "{text}", "--target", '"', "--random", "3", "--out", "{out}"]
CLI_CASES = [
    ("ablate --unit layers.0:0-999999999", [*ABLATE, "--unit", "layers.0:0-999999999"], r"hidden size|range|units"),
    ("ablate an unknown quantity layers.0.foo_gate", [*ABLATE, "--unit", "layers.0.foo_gate:0"], r"quantit"),
    ("ablate every unit of a layer", [*ABLATE, "--unit", "layers.0:0-7"], r"random|every unit|all"),
    ("steer --length 1e9", ["steer", "{model}", "--prompt", "He", "--ablate", "layers.1:0", "--length", "1000000000",
                            "--out", "{out}"], r"length"),
    ("steer --samples 1e9", ["steer", "{model}", "--prompt", "He", "--ablate", "layers.1:0", "--samples",
                             "1000000000", "--out", "{out}"], r"samples"),
    ("steer --scale layers.1:0=1e300", ["steer", "{model}", "--prompt", "He", "--scale", "layers.1:0=1e300",
                                        "--samples", "2", "--length", "20", "--out", "{out}"], r"factor|scale"),
    ("steer --clamp layers.0.input_gate:0=5", ["steer", "{model}", "--prompt", "He", "--clamp",
                                               "layers.0.input_gate:0=5", "--samples", "2", "--length", "20",
                                               "--out", "{out}"], r"\[0, 1\]|range|between"),
]


def cli_case(args: list[str], clear: str) -> Callable:
    def run(tmp: Path) -> tuple[str, str]:
        paths = {"model": str(tmp / "model"), "text": str(tmp / "text.txt"), "out": str(tmp / "out")}
        return cli([a.format(**paths) for a in args], clear, timeout=60)

    return run


for _name, _args, _clear in CLI_CASES:
    case("ablate/steer", _name)(cli_case(_args, _clear))


@case("ablate/steer", "the unknown-character hint of ablate names a flag ablate has")
def _(tmp: Path) -> tuple[str, str]:
    (tmp / "odd.txt").write_text(TEXT + "\u00e9")
    outcome = cli(["ablate", str(tmp / "model"), str(tmp / "odd.txt"), "--unit", "layers.1:0", "--target", '"',
                   "--random", "3", "--out", str(tmp / "out")], r".")  # fmt: skip
    help_text = subprocess.run([sys.executable, "-c", CLI, "ablate", "--help"], capture_output=True, text=True).stdout
    flags = re.findall(r"(--[a-z][a-z-]+)", outcome[1])
    missing = [f for f in flags if f not in help_text]
    return ("refused unclearly", f"names {missing}, which ablate lacks") if missing else outcome


# ---------------------------------------------------------------------------------------------------- Python API
def nan_check(trace: Any) -> str | None:
    log_probs = trace.log_probs if hasattr(trace, "log_probs") else None
    if log_probs is not None and not torch.isfinite(log_probs).all():
        return "non-finite log-probs, no error"
    return "accepted"


def api_cases() -> list[tuple[str, Callable[[], Any], str, Callable[[Any], str | None]]]:
    from lstm_interp.interventions import Ablate, Clamp, Scale, generate_with_interventions, run_with_interventions
    from lstm_interp.tracing import trace

    model = tiny_model()
    other = tiny_model(hidden=4)
    run = run_with_interventions
    accepted: Callable[[Any], str | None] = lambda _: "accepted"  # noqa: E731
    works: Callable[[Any], str | None] = lambda _: None  # noqa: E731 (a legitimate use, handled)
    return [
        ("Scale(factor=inf)", lambda: run(model, TEXT[:100], [Scale("layers.1.cell", [0], math.inf)]), "factor",
         nan_check),
        ("Scale(factor=1e300)", lambda: run(model, TEXT[:100], [Scale("layers.1.cell", [0, 1], 1e300)]), "factor",
         nan_check),
        ("run_with_interventions(dtype=torch.int8)",
         lambda: run(model, TEXT[:50], [Ablate("layers.1.cell", [0])], dtype=torch.int8), "dtype", accepted),
        ("Ablate(value='mean', reference=5)",
         lambda: run(model, TEXT[:50], [Ablate("layers.1.cell", [0], value="mean", reference=5)]), "reference",
         accepted),
        ("Ablate(value='mean', reference=another architecture's trace)",
         lambda: run(model, TEXT[:50], [Ablate("layers.1.cell", [0], value="mean", reference=trace(other, TEXT))]),
         "reference|hidden|architecture|units", accepted),
        ("Clamp(value='abc')", lambda: run(model, TEXT[:50], [Clamp("layers.1.cell", [0], "abc")]), "value",
         accepted),
        ("steps=slice(1.5, None)",
         lambda: run(model, TEXT[:50], [Ablate("layers.1.cell", [0], steps=slice(1.5, None))]), "steps", accepted),
        ("generate_with_interventions(..., Ablate(...)), one not in a list",
         lambda: generate_with_interventions(model, "He", 10, Ablate("layers.1.cell", [0]), seed=0), "interventions",
         works),
        ("generate(None, 10)", lambda: model.generate(None, 10), r"None", accepted),
        ("steer(prompt=None)", lambda: __import__("lstm_interp.experiments.steer", fromlist=["steer"]).steer(
            model, None, [Ablate("layers.1.cell", [0])], n_samples=2, length=5), r"None", accepted),
        ("Clamp a gate to 5", lambda: run(model, TEXT[:50], [Clamp("layers.0.input_gate", [0], 5.0)]),
         r"\[0, 1\]|range|between", accepted),
    ]


# ----------------------------------------------------------------------------------------------------------- files
def file_cases(tmp: Path) -> list[tuple[str, Callable[[], Any], str]]:
    from lstm_interp.analysis.state_index import StateIndex
    from lstm_interp.data.char_datamodule import CharDataModule
    from lstm_interp.manifest import read_manifest

    nested = "[" * 100_000 + "]" * 100_000
    (tmp / "m").mkdir()
    (tmp / "m" / "manifest.json").write_text(nested)
    index = StateIndex.build(tiny_model(), TEXT, tmp / "index").path
    (tmp / "nested_index").mkdir()
    for f in index.iterdir():
        if f.is_file():
            (tmp / "nested_index" / f.name).write_bytes(f.read_bytes())
    (tmp / "nested_index" / "index.json").write_text(nested)
    header = json.loads((index / "index.json").read_text())
    header["chars"] = header["chars"][:1]
    (index / "index.json").write_text(json.dumps(header))
    (tmp / "folder").mkdir()
    (tmp / "folder" / "a.txt").write_text(TEXT)
    return [
        ("a manifest.json nested 100,000 deep", lambda: read_manifest(tmp / "m"), r"nested"),
        ("an index.json nested 100,000 deep", lambda: StateIndex.open(tmp / "nested_index"), r"nested"),
        ("an index header with fewer characters than its ids", lambda: StateIndex.open(index).text(0, 50),
         r"characters|corrupt"),
        ("CharDataModule(files=<a folder>)",
         lambda: CharDataModule(files=str(tmp / "folder"), batch_size=2, seq_len=4).vocab, r"folder|directory"),
    ]


def with_limit(seconds: int, fn: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    def alarm(*_: Any) -> None:
        raise Hang

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn()
    except Hang:
        return "hang", f"still running after {seconds} s"
    finally:
        signal.alarm(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    root = Path(parser.parse_args().root).resolve()
    assert Path(lstm_interp.__file__).resolve().is_relative_to(root), (lstm_interp.__file__, root)
    torch.set_num_threads(1)
    logging.disable(logging.NOTSET)

    def emit(group: str, name: str, outcome: tuple[str, str]) -> None:
        print(json.dumps({"group": group, "case": name, "outcome": outcome[0], "detail": outcome[1]}), flush=True)

    with tempfile.TemporaryDirectory(prefix="bad-input-") as scratch:
        base = Path(scratch)
        tiny_model().save_pretrained(base / "model")
        (base / "text.txt").write_text(TEXT)
        for i, (group, name, fn) in enumerate(CASES):
            tmp = base / f"case{i}"
            tmp.mkdir()
            for shared in ("model", "text.txt"):
                (tmp / shared).symlink_to(base / shared)
            emit(group, name, with_limit(300, lambda fn=fn, tmp=tmp: fn(tmp)))
        for name, fn, clear, check in api_cases():
            emit("Python API", name, with_limit(120, lambda fn=fn, clear=clear, check=check: raised(fn, clear, check)))
        (base / "files").mkdir()
        for name, fn, clear in file_cases(base / "files"):
            emit("files", name, with_limit(60, lambda fn=fn, clear=clear: raised(fn, clear)))


if __name__ == "__main__":
    main()
