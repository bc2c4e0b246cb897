"""``run_server`` (``lstm_interp/serve/run_server.py``): a real uvicorn server on 127.0.0.1, stopped by a real signal.

The server runs in a child process, as a script calling ``run_server`` would: what it prints, how SIGTERM and Ctrl+C
end it (a return and a ``KeyboardInterrupt``), and that its signal handlers are put back. The refusals before serving
(an argument ``create_app`` refuses, a port in use) run in this process, on real sockets.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import tiny_char_lstm

from lstm_interp.serve.run_server import ServerArgumentError, run_server

WAIT_S = 120.0  # a bound against hanging, never a measurement

# Runs run_server until stopped, then says how it ended and which SIGTERM handler is left.
SCRIPT = """
import signal, sys
from lstm_interp.serve.run_server import run_server
try:
    run_server(sys.argv[1], port=0, threads=1)
    print("returned", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
print("SIGTERM handler restored:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
"""


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    tiny_char_lstm().save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(WAIT_S):
            raise TimeoutError(f"the server printed nothing within {WAIT_S} s")
    return process.stdout.readline().strip()


def _info(url: str, process: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + WAIT_S
    while True:  # the socket is bound before "Serving"; uvicorn listens on it a moment later
        try:
            with urllib.request.urlopen(f"{url}api/info", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize(("stop", "ending"), [(signal.SIGTERM, "returned"), (signal.SIGINT, "KeyboardInterrupt")])
def test_it_serves_on_a_free_port_until_a_signal(model_folder: Path, stop: signal.Signals, ending: str) -> None:
    command = [sys.executable, "-c", SCRIPT, str(model_folder)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = _line(process)
        assert line.startswith(f"Serving {model_folder} at http://127.0.0.1:") and line.endswith(" (Ctrl+C to stop)")
        url = line.split(" at ", 1)[1].split()[0]
        assert not url.endswith(":0/")
        assert _info(url, process)["hidden_size"] == 8
        process.send_signal(stop)
        out, err = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    assert out.splitlines() == [ending, "SIGTERM handler restored: True"], (out, err)
    assert "Traceback" not in err and "not loopback" not in err, err


def test_an_argument_create_app_refuses_is_named_before_anything_is_bound(model_folder: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ServerArgumentError, match=r"`thresholds` must be one or more distinct numbers") as refused:
        # threads: this process's own count, since run_server sets it for the whole process
        run_server(model_folder, thresholds=[0.3, 0.3], port=0, threads=torch.get_num_threads())
    assert isinstance(refused.value, ValueError)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_port_in_use_is_named(model_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: "):
            run_server(model_folder, port=port, threads=torch.get_num_threads())
    assert signal.getsignal(signal.SIGTERM) is before
    assert "Serving" not in capsys.readouterr().out
