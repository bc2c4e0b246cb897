"""The live explorer's limits (issue 21): no request holds the server, and every failure is a clear error.

Real uvicorn servers on 127.0.0.1 in child processes (``create_app`` directly, or ``lstm-interp serve``), real HTTP
and raw sockets. What happened to a request's work is read from ``GET /api/info``'s ``work`` counts (the server's
:class:`~lstm_interp.serve.deadline.WorkStats`); nothing asserts on how long anything took. Requests are made slow
by their size (:func:`slow_trace`): tens of seconds of work against the ``tight`` server's 0.2 s deadline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_VOCAB, tiny_char_lstm
from test_serve import _first_line, _stop

from lstm_interp.analysis import StateIndex
from lstm_interp.interventions import Clamp, Scale, run_with_interventions
from lstm_interp.serve.explorer import EDIT_CHUNK, SEGMENT_STEPS, Explorer
from lstm_interp.serve.index_folders import OWNER_FILE, PREFIX, process_start_time, remove_stale_index_folders
from lstm_interp.tracing import trace

pytestmark = pytest.mark.usefixtures("one_thread")

STARTUP_S = 60.0
WAIT_S = 120.0  # how long to wait for something the server must do: a bound against hanging, never a measurement
HIDDEN = 32
CHEAP = {"cells": [["layers.0", 1]], "top": 1, "context": 0}  # a match of one cell: no torch, a few ms


def slow_trace(chars: int) -> dict[str, Any]:
    """A trace of ``chars`` characters under 32 gate clamps: every step runs the layers' step loop (4 s for 5,000
    characters of the tiny model here), in segments of 2,048 steps between which the deadline is checked."""
    text = "".join(random.Random(chars).choice(TINY_VOCAB) for _ in range(chars))
    clamps = [{"op": "clamp", "name": f"layers.{i % 2}.forget_gate", "units": [i], "value": 0.5} for i in range(32)]
    return {"text": text, "interventions": clamps}


SERVER_SCRIPT = """
import json, socket, sys
import torch
torch.set_num_threads(1)
import uvicorn
from lstm_interp import load_pretrained
from lstm_interp.serve.app import create_app
model = load_pretrained(sys.argv[1])
corpus = open(sys.argv[2], encoding="utf-8").read()
app = create_app(model, corpus_texts=[corpus], **json.loads(sys.argv[3]))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@dataclass
class Server:
    url: str
    port: int
    stderr: Path


def request(url: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    """(status, decoded JSON) of a GET (no body) or a JSON POST."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def work(server: Server) -> dict[str, Any]:
    status, info = request(f"{server.url}/api/info")
    assert status == 200, info
    return info["work"]


def wait_for(server: Server, condition: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Poll the server's work counts until ``condition`` holds."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        counts = work(server)
        if condition(counts):
            return counts
        time.sleep(0.02)
    raise AssertionError(f"the server never got to: {what} (work counts {work(server)})")


def _model_and_corpus(folder: Path) -> tuple[Path, Path]:
    model = tiny_char_lstm(hidden_size=HIDDEN, weight_scale=3.0)
    model.save_pretrained(folder / "model")
    rng = random.Random(0)
    (folder / "corpus.txt").write_text("".join(rng.choice(TINY_VOCAB) for _ in range(50_000)), encoding="utf-8")
    return folder / "model", folder / "corpus.txt"


def _start(folder: Path, options: dict[str, Any], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Server]:
    model, corpus = _model_and_corpus(folder)
    stderr = folder / "stderr.txt"
    child_env = {
        **(env or os.environ),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(model), str(corpus), json.dumps(options)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=child_env,
        )  # fmt: skip
    try:
        port = int(_first_line(process, STARTUP_S))
        server = Server(f"http://127.0.0.1:{port}", port, stderr)
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                work(server)
                return process, server
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {stderr.read_text()[-2000:]}") from None
                time.sleep(0.1)
    except BaseException:
        _stop(process)
        raise


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose requests' work may run 0.2 s (and cost anything): a slow trace runs far past it."""
    options = {"request_timeout_s": 0.2, "queue_timeout_s": WAIT_S, "max_request_cost": 1e12,
               "max_text_chars": 20_000, "max_body_bytes": 200_000}  # fmt: skip
    process, server = _start(tmp_path_factory.mktemp("tight"), options)
    try:
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with time to spare (300 s a request) but a cost limit of 10,000 units, and 20,000-character texts."""
    options = {"request_timeout_s": 300.0, "max_request_cost": 10_000, "max_text_chars": 20_000,
               "max_body_bytes": 200_000}  # fmt: skip
    process, server = _start(tmp_path_factory.mktemp("roomy"), options)
    try:
        yield server
    finally:
        _stop(process)


# ------------------------------------------------------------------------------------------- cost, up front
def test_the_limits_are_in_the_info(roomy: Server) -> None:
    status, info = request(f"{roomy.url}/api/info")
    assert status == 200
    assert info["request_timeout_s"] == 300.0 and info["queue_timeout_s"] == 30.0
    assert info["max_request_cost"] == 10_000
    assert set(info["request_costs"]) == {"trace", "features", "select", "match"}
    assert set(info["work"]) >= {"submitted", "started", "finished", "stopped", "dropped", "refused", "gone"}


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("trace", slow_trace(20_000), ["`text`", "`interventions`", "20,000 steps x (0.4 + 0.5 + 32 interventions"]),
        ("features", {"text": "ab xy" * 4_000}, ["`text`", "20,000 steps x 0.6"]),
    ],
)
def test_a_request_over_the_cost_limit_is_refused_before_any_work(
    roomy: Server, path: str, body: dict[str, Any], fields: list[str]
) -> None:
    before = work(roomy)
    status, result = request(f"{roomy.url}/api/{path}", body)
    assert status == 413, result
    assert f"this /api/{path} request is estimated at" in result["error"], result["error"]
    assert "over the limit of 10,000" in result["error"]
    assert all(field in result["error"] for field in fields), result["error"]
    assert result["estimate"] > result["limit"] == 10_000
    after = work(roomy)
    assert after["refused"] == before["refused"] + 1
    assert after["submitted"] == before["submitted"]  # never queued, let alone run


# ---------------------------------------------------------------------------------------------- deadlines
def test_work_past_the_deadline_is_stopped_and_the_next_request_is_served(tight: Server) -> None:
    before = work(tight)
    status, result = request(f"{tight.url}/api/trace", slow_trace(20_000))
    assert status == 504, result
    assert "past the limit of 0.2 s (request_timeout_s)" in result["error"]
    # The work itself stops at its next check (the end of its first segment), not after all 20,000 steps.
    stopped = wait_for(tight, lambda w: w["stopped"].get("deadline", 0) > before["stopped"].get("deadline", 0),
                       "stop the timed-out trace")  # fmt: skip
    status, result = request(f"{tight.url}/api/match", CHEAP)
    assert status == 200 and len(result["matches"]) == 1, result
    after = work(tight)
    assert after["finished"] == stopped["finished"] + 1 == before["finished"] + 1  # the cheap one only


def test_a_request_queued_behind_slow_ones_is_not_failed_for_the_wait(tight: Server) -> None:
    """The deadline counts from the start of a request's work: a cheap request queued behind two slow ones waits
    at least their two deadlines (each holds the thread past its own), over its own 0.2 s, and is still served."""
    before = work(tight)
    answers: dict[str, tuple[int, Any]] = {}

    def send(name: str, path: str, body: dict[str, Any]) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(name, request(f"{tight.url}/api/{path}", body)))
        thread.start()
        return thread

    threads = [send("first", "trace", slow_trace(20_000))]
    wait_for(tight, lambda w: w["started"] > before["started"], "start the first slow trace")
    threads.append(send("second", "trace", slow_trace(19_000)))
    wait_for(tight, lambda w: w["submitted"] > before["submitted"] + 1, "queue the second slow trace")
    threads.append(send("cheap", "match", CHEAP))
    for thread in threads:
        thread.join(WAIT_S)
    assert answers["first"][0] == 504 and answers["second"][0] == 504, answers
    assert answers["cheap"][0] == 200, answers["cheap"]
    after = work(tight)
    assert after["dropped"] == before["dropped"]  # nothing was given up for its wait in the queue


def test_a_request_that_waits_past_the_queue_limit_gets_503_and_never_runs(tmp_path: Path) -> None:
    """A server whose requests may wait 0.3 s for the model's thread: a cheap request queued behind a trace that runs
    for seconds is dropped unstarted with 503, "busy" and Retry-After; the trace itself is served."""
    options = {"request_timeout_s": 300.0, "queue_timeout_s": 0.3, "max_request_cost": 1e12,
               "max_text_chars": 20_000, "max_body_bytes": 200_000}  # fmt: skip
    process, server = _start(tmp_path, options)
    try:
        # The model's thread may still be busy from the start (the corpus index, the first torch call): wait for a
        # cheap request to be served before timing the queue.
        give_up = time.monotonic() + WAIT_S
        while request(f"{server.url}/api/match", CHEAP)[0] != 200:
            assert time.monotonic() < give_up, "the server never served a cheap request"
            time.sleep(0.2)
        before = work(server)
        answers: dict[str, tuple[int, Any]] = {}
        slow = threading.Thread(target=lambda: answers.__setitem__("slow", request(f"{server.url}/api/trace",
                                                                                   slow_trace(20_000))))  # fmt: skip
        slow.start()
        wait_for(server, lambda w: w["started"] > before["started"], "start the slow trace")
        req = urllib.request.Request(f"{server.url}/api/match", data=json.dumps(CHEAP).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=WAIT_S)
        assert caught.value.code == 503
        assert caught.value.headers["Retry-After"] == "1"
        assert "busy" in json.loads(caught.value.read())["error"]
        slow.join(WAIT_S)
        assert answers["slow"][0] == 200, answers["slow"]
        after = work(server)
        assert after["dropped"].get("queue", 0) == before["dropped"].get("queue", 0) + 1
        assert after["finished"] == before["finished"] + 1  # the slow trace; the dropped match never ran
    finally:
        _stop(process)


def test_a_client_that_disconnects_cancels_its_work(roomy: Server) -> None:
    before = work(roomy)
    body = json.dumps(slow_trace(6_000)).encode()  # 9,240 cost units: under roomy's limit, and seconds of work
    with socket.create_connection(("127.0.0.1", roomy.port), timeout=WAIT_S) as client:
        client.sendall(
            f"POST /api/trace HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        wait_for(roomy, lambda w: w["started"] > before["started"], "start the slow trace")
    # The client has gone: the work stops at its next check, long before its 300 s deadline.
    after = wait_for(roomy, lambda w: w["stopped"].get("disconnect", 0) > before["stopped"].get("disconnect", 0),
                     "stop the work of a client that left")  # fmt: skip
    assert after["finished"] == before["finished"] and after["gone"] == before["gone"] + 1
    status, result = request(f"{roomy.url}/api/match", CHEAP)
    assert status == 200, result


def test_a_client_that_leaves_mid_body_logs_no_traceback(roomy: Server) -> None:
    before = work(roomy)
    with socket.create_connection(("127.0.0.1", roomy.port), timeout=WAIT_S) as client:
        client.sendall(
            b"POST /api/trace HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"text": "a'
        )
    wait_for(roomy, lambda w: w["gone"] > before["gone"], "notice the client that left mid-body")
    assert request(f"{roomy.url}/api/match", CHEAP)[0] == 200
    logged = roomy.stderr.read_text()
    assert "Traceback" not in logged, logged


# ------------------------------------------------------------------------------------ clear error messages
@pytest.mark.parametrize(
    ("path", "raw", "message"),
    [
        ("trace", '{"text": "ab\\ud800 xy"}', "`text` has a lone surrogate U+D800 at character 2; send valid Unicode"),
        ("features", '{"text": "\\udfffab"}', "`text` has a lone surrogate U+DFFF at character 0"),
        ("select", '{"text": "abxy\\udc00", "span": [0, 2]}', "`text` has a lone surrogate U+DC00 at character 4"),
        ("trace", '{"text": "ab", "interventions": [{"op": "ablate", "name": "layers.0.cell\\ud800", "units": [1]}]}',
         "`interventions[0].name` has a lone surrogate U+D800 at character 13"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_named_with_its_offset(roomy: Server, path: str, raw: str, message: str) -> None:
    status, result = request(f"{roomy.url}/api/{path}", raw=raw.encode())
    assert status == 400, result
    assert message in result["error"], result["error"]
    assert "codec" not in result["error"]


def test_a_surrogate_pair_is_one_character(roomy: Server) -> None:
    status, result = request(f"{roomy.url}/api/trace", raw=b'{"text": "ab\\ud83d\\ude00"}')
    assert status == 200, result
    assert result["chars"] == ["a", "b", "\U0001f600"] and result["unknown"] == [2]


def test_a_huge_scale_factor_is_refused_naming_it(roomy: Server) -> None:
    scale = {"op": "scale", "name": "layers.1.cell", "units": [1], "factor": 1e300}
    status, result = request(f"{roomy.url}/api/trace", {"text": "ab xy", "interventions": [scale]})
    assert 400 <= status < 500, result
    assert "factor" in result["error"] and "1e+300" in result["error"], result["error"]
    assert "JSON" not in result["error"]


def test_interventions_that_overflow_the_model_are_named(roomy: Server) -> None:
    # Every unit of the last hidden state at 3e38: the head's logits overflow to +-inf, its log-softmax to NaN.
    clamp = {"op": "clamp", "name": "layers.1.hidden", "units": list(range(HIDDEN)), "value": 3e38}
    ablate = {"op": "ablate", "name": "layers.0.cell", "units": [1]}
    status, result = request(f"{roomy.url}/api/trace", {"text": "ab xy ab", "interventions": [ablate, clamp]})
    assert status == 422, result
    assert "interventions[1] (clamp layers.1.hidden" in result["error"], result["error"]
    assert "`value` 3e+38" in result["error"] and "float32" in result["error"]
    assert "JSON" not in result["error"]


def test_a_value_json_cannot_hold_is_named_not_the_encoder_s_words() -> None:
    from lstm_interp.serve.json_safety import json_response

    response = json_response({"matches": [{"jaccard": 0.5}, {"jaccard": float("nan")}]})
    assert response.status_code == 500
    error = json.loads(response.body)["error"]
    assert "matches[1].jaccard = nan" in error and "Out of range" not in error


# ---------------------------------------------------------------------------------- segments of one run
def test_a_run_in_segments_is_one_run() -> None:
    """The deadline is checked between segments of a trace; the segmented run is the library's one run (a plain one
    on the sessions' grid of EDIT_CHUNK steps, the same numbers as one chunk to float32 rounding)."""
    model = tiny_char_lstm(hidden_size=HIDDEN, weight_scale=3.0)
    explorer = Explorer(model, [], [0.3], 10_000)
    known = "".join(random.Random(0).choice(TINY_VOCAB) for _ in range(2 * SEGMENT_STEPS + 100))
    names = ["layers.0.cell", "layers.1.forget_gate", "log_probs"]
    ran = explorer.run(known, names)
    plain = trace(model, known, names_filter=names, chunk_size=EDIT_CHUNK)
    assert all(torch.equal(ran[name], plain[name]) for name in names)
    whole = trace(model, known, names_filter=names)
    assert all(torch.allclose(ran[name], whole[name], atol=1e-5) for name in names)
    interventions = [
        Clamp("layers.0.forget_gate", [3], 0.2, steps=slice(SEGMENT_STEPS - 10, SEGMENT_STEPS + 10)),  # across one
        Scale("layers.1.hidden", [5, 6], 2.5),  # at every step
        Clamp("layers.1.cell", [1], 0.7, steps=slice(10, 20)),  # in the first segment only
    ]
    ran = explorer.run(known, names, interventions)
    whole = run_with_interventions(model, known, interventions, names_filter=names)
    assert all(torch.equal(ran[name], whole[name]) for name in names)


# -------------------------------------------------------------------------------------------- the command
def _cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """``lstm-interp serve folder/model --port 0 ARGS``, once it says it is serving: the process and its URL."""
    # The entry point as the console script calls it (`python -m lstm_interp.cli.main` adds runpy's warning).
    entry = "import sys; from lstm_interp.cli.main import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "serve", str(folder / "model"), "--port", "0", *args]
    with (folder / "stderr.txt").open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True,
                                   env={**(env or os.environ), "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        line = _first_line(process, STARTUP_S)
        assert line.startswith("Serving"), (line, (folder / "stderr.txt").read_text())
        url = line.split(" at ", 1)[1].split()[0].rstrip("/")
        deadline = time.monotonic() + STARTUP_S
        while True:  # the socket is bound before "Serving"; uvicorn listens on it a moment later
            try:
                request(f"{url}/api/info")
                return process, url
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    except BaseException:
        _stop(process)
        raise


@pytest.mark.parametrize(("stop", "statuses", "lines"), [(signal.SIGINT, (0, 130), 1), (signal.SIGTERM, (0,), 0)])
def test_ctrl_c_and_sigterm_stop_the_command_quietly(
    tmp_path: Path, stop: signal.Signals, statuses: tuple[int, ...], lines: int
) -> None:
    tiny_char_lstm().save_pretrained(tmp_path / "model")
    process, _ = _cli(tmp_path)
    try:
        process.send_signal(stop)
        assert process.wait(timeout=WAIT_S) in statuses
    finally:
        _stop(process)
    logged = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in logged and "KeyboardInterrupt" not in logged, logged
    assert len(logged.strip().splitlines()) <= lines, logged


def test_ctrl_c_right_after_serving_is_printed_stops_quietly(tmp_path: Path) -> None:
    """A Ctrl+C in the instant between "Serving ..." and uvicorn's own signal handlers (inside its event loop's
    set-up) once raised KeyboardInterrupt inside asyncio, with a traceback (about 1 run in 40): each of these stops
    with status 130 and one line, whenever in that window the signal lands."""
    tiny_char_lstm().save_pretrained(tmp_path / "model")
    entry = "import sys; from lstm_interp.cli.main import main; sys.exit(main(sys.argv[1:]))"  # the console script's
    command = [sys.executable, "-c", entry, "serve", str(tmp_path / "model"), "--port", "0"]
    for delay in (0, 0, 0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.2):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
        try:
            assert "Serving" in _first_line(process, WAIT_S)
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=WAIT_S)
        finally:
            _stop(process)
        assert process.returncode == 130, (delay, err)
        assert "Traceback" not in err and "never awaited" not in err, (delay, err)
        assert err.strip().splitlines() == ["lstm-interp serve: interrupted"], (delay, err)


def _indexed(url: str) -> None:
    """Until the server says its corpora are indexed (``indexing`` null in ``/api/info``)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/info", timeout=5) as response:
            if json.loads(response.read())["indexing"] is None:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} was still indexing after {WAIT_S} s")


def _index_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX))


def test_a_server_killed_while_indexing_leaves_no_cache_entry_and_the_next_builds_it_whole(tmp_path: Path) -> None:
    _model_and_corpus(tmp_path)
    rng = random.Random(2)
    big = tmp_path / "big.txt"  # long enough to be killed half-way through indexing
    big.write_text("".join(rng.choice(TINY_VOCAB) for _ in range(2_000_000)), encoding="utf-8")
    cache = tmp_path / "cache"
    env = {**os.environ, "LSTM_INTERP_CACHE": str(cache)}
    process, url = _cli(tmp_path, "--corpus", str(big), env=env)
    deadline = time.monotonic() + WAIT_S
    while not (cache / "indexes").is_dir() or not any((cache / "indexes").iterdir()):  # the build has begun
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.kill()  # SIGKILL: no clean-up runs
    process.wait(timeout=WAIT_S)
    left = list((cache / "indexes").iterdir())
    assert left and all(p.name.startswith(".") for p in left), left  # a partial folder at most, no entry
    process, url = _cli(tmp_path, "--corpus", str(big), env=env)
    try:
        _indexed(url)
        entries = list((cache / "indexes").iterdir())
        assert len(entries) == 1 and not entries[0].name.startswith("."), entries  # the partial is gone
        assert StateIndex.open(entries[0], verify=True).num_steps == 2_000_000
    finally:
        _stop(process)


def test_only_folders_of_dead_owners_with_our_marker_are_removed(tmp_path: Path) -> None:
    def folder(name: str, marker: str | None) -> Path:
        path = tmp_path / f"{PREFIX}{name}"
        path.mkdir()
        if marker is not None:
            (path / OWNER_FILE).write_text(marker)
        return path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = folder("gone", json.dumps({"pid": int(dead.stdout), "start_time": None}))
    me = os.getpid()
    alive = folder("alive", json.dumps({"pid": me, "start_time": process_start_time(me)}))
    reused = folder("reused", json.dumps({"pid": me, "start_time": -1}))  # our pid, another process's start
    unreadable = folder("unreadable", "{not json")
    unmarked = folder("unmarked", None)
    other = tmp_path / "other-folder"
    other.mkdir()
    (other / OWNER_FILE).write_text(json.dumps({"pid": int(dead.stdout), "start_time": None}))
    removed = remove_stale_index_folders(tmp_path)
    expected = [gone] + ([reused] if process_start_time(me) is not None else [])
    assert sorted(removed) == sorted(expected)
    assert all(p.exists() for p in (alive, unreadable, unmarked, other))
    assert not gone.exists()


def test_the_limits_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lstm_interp.cli.main import main as cli_main
    from lstm_interp.serve import create_app

    model = tiny_char_lstm()
    for label, value in (("request_timeout_s", 0), ("queue_timeout_s", float("inf")), ("max_request_cost", -1)):
        with pytest.raises(ValueError, match=f"`{label}` must be a positive finite number, got {value!r}"):
            create_app(model, **{label: value})
    model.save_pretrained(tmp_path / "model")
    assert cli_main(["serve", str(tmp_path / "model"), "--request-timeout", "0"]) == 2
    assert "--request-timeout: must be a finite number > 0, got '0'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- the opening, in steps
def test_requests_made_during_the_opening_run_between_its_steps() -> None:
    """The opening runs one passage per job on the model's thread: a request queued meanwhile waits for one step,
    not the whole opening; the opening's value (or error) comes back whole."""
    from concurrent.futures import ThreadPoolExecutor

    from lstm_interp.serve.app import _in_steps

    order: list[str] = []
    first_step = threading.Event()
    release = threading.Event()

    def steps():
        order.append("step 1")
        first_step.set()
        release.wait(10)
        yield
        order.append("step 2")
        yield
        order.append("step 3")
        return "opened"

    with ThreadPoolExecutor(max_workers=1) as worker:
        opening = _in_steps(worker, steps())
        assert first_step.wait(10)
        request = worker.submit(order.append, "a request")  # queued while step 1 runs
        release.set()
        request.result(10)
        assert opening.result(10) == "opened"
    assert order == ["step 1", "a request", "step 2", "step 3"]

    def failing():
        yield
        raise RuntimeError("no passage")

    with ThreadPoolExecutor(max_workers=1) as worker, pytest.raises(RuntimeError, match="no passage"):
        _in_steps(worker, failing()).result(10)


def test_a_background_index_build_waits_for_the_opening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build starts when its event is set (create_app sets it once the opening is worked out), not before."""
    from lstm_interp.serve.corpus_indexes import CorpusIndexes

    monkeypatch.setenv("LSTM_INTERP_CACHE", str(tmp_path / "cache"))
    opened = threading.Event()
    indexes = CorpusIndexes(tiny_char_lstm(), ['ab "xy" {ab}\n' * 20], [0.3], background=True, start_after=opened)
    time.sleep(0.5)
    assert indexes.indexes == [] and indexes.indexing == (0, 1, 0, 0) and indexes.percent() == 0.0
    opened.set()
    deadline = time.monotonic() + 60
    while indexes.percent() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert indexes.error is None and len(indexes.indexes) == 1 and 0.3 in indexes.indexes[0]
