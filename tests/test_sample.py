"""Streaming samples: ``CharLSTM.generate_stream`` and ``lstm-interp sample``'s stream, length limit and progress."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_run import run_cli

from lstm_interp import CharLSTM, VocabularyError
from lstm_interp.cli._arguments import MAX_LENGTH

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# The console entry point, run in a child process exactly as tests/test_cli.py runs it (without runpy's warning
# about `python -m lstm_interp.cli.main`).
ENTRY = "import sys; from lstm_interp.cli.main import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def model(make_model: Callable[..., CharLSTM]) -> CharLSTM:
    # One layer: the CLI tests sample tens of thousands of characters, one forward pass each.
    return make_model(num_layers=1)


@pytest.fixture
def model_dir(model: CharLSTM, tmp_path: Path) -> Path:
    model.save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def _reference_sample(
    model: CharLSTM, prompt: str, length: int, temperature: float, top_k: int | None, seed: int
) -> str:
    """The sampling algorithm written out independently: prompt, then one character per forward pass."""
    vocab = model.vocab
    assert vocab is not None
    generator = torch.Generator().manual_seed(seed)
    ids: list[int] = []
    with torch.no_grad():
        logits, state = model(vocab.encode(prompt)[None])
        for _ in range(length):
            scores = logits[0, -1].float()
            if temperature == 0:
                ids.append(int(scores.argmax()))
            else:
                scores = scores / temperature
                if top_k is not None and top_k < scores.numel():
                    scores = scores.masked_fill(scores < torch.topk(scores, top_k).values[-1], float("-inf"))
                ids.append(int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)))
            logits, state = model(torch.tensor([[ids[-1]]]), state)
    return vocab.decode(ids)


# ---------------------------------------------------------------------------------------------- generate_stream
@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, None), (0.5, None), (1.0, None), (1.0, 3), (1.7, 1)])
@pytest.mark.parametrize("seed", [0, 7])
def test_generate_stream_joined_is_generate(
    make_model: Callable[..., CharLSTM], temperature: float, top_k: int | None, seed: int
) -> None:
    model = make_model()  # two layers: the state of every layer is carried from step to step
    prompt = 'ab{"'
    chars = list(model.generate_stream(prompt, 120, temperature=temperature, top_k=top_k, seed=seed))
    assert all(len(char) == 1 for char in chars) and len(chars) == 120
    text = "".join(chars)
    assert text == model.generate(prompt, 120, temperature=temperature, top_k=top_k, seed=seed, include_prompt=False)
    assert text == _reference_sample(model, prompt, 120, temperature, top_k, seed)


def test_generate_stream_of_length_zero_yields_nothing(model: CharLSTM) -> None:
    assert list(model.generate_stream("a", 0, seed=0)) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prompt": ""}, ValueError, "`prompt` must be non-empty"),
        ({"prompt": "aZ"}, VocabularyError, "'Z'"),
        ({"length": -1}, ValueError, "`length` must be >= 0, got -1"),
        ({"length": "3"}, TypeError, "`length` must be an integer, got str '3'"),
        ({"temperature": "hot"}, TypeError, "`temperature` must be a number, got str 'hot'"),
        ({"temperature": -0.5}, ValueError, "`temperature` must be a finite number >= 0, got -0.5"),
        ({"top_k": 0}, ValueError, "`top_k` must be >= 1 or None, got 0"),
        ({"top_k": 2.5}, TypeError, "`top_k` must be an integer or None, got float 2.5"),
    ],
)
def test_generate_stream_checks_its_arguments_at_the_call(
    model: CharLSTM, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    arguments: dict[str, Any] = {"prompt": "a", "length": 5, **kwargs}
    model.train()
    with pytest.raises(error, match=re.escape(match)):
        model.generate_stream(**arguments)  # no next(): a lazy check would return an iterator here
    assert model.training


def test_generate_stream_restores_the_mode_when_stopped_early(model: CharLSTM) -> None:
    model.train()
    stream = model.generate_stream("a", 1000, seed=0)
    assert model.training  # nothing runs before the first next(), so a stream never started changes nothing
    next(stream)
    assert not model.training  # eval mode while it runs: dropout off, the documented behaviour
    stream.close()
    assert model.training

    for _ in model.generate_stream("a", 1000, seed=0):
        break  # the temporary iterator is collected at once, which closes it
    assert model.training

    model.eval()
    assert len("".join(model.generate_stream("a", 10, seed=0))) == 10
    assert not model.training


def test_generate_stream_runs_without_gradients_and_leaves_the_callers_grad_mode(model: CharLSTM) -> None:
    grad_enabled: list[bool] = []
    handle = model.head.register_forward_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    try:
        seen_between_steps = [torch.is_grad_enabled() for _ in model.generate_stream("a", 5, seed=0)]
    finally:
        handle.remove()
    assert grad_enabled == [False] * 5
    assert seen_between_steps == [True] * 5


# ---------------------------------------------------------------------------------------------- the CLI
def test_cli_prints_what_generate_returns(model: CharLSTM, model_dir: Path) -> None:
    code, out, err = run_cli(["sample", str(model_dir), "--prompt", "ab", "--length", "600", "--seed", "3"])
    assert (code, err) == (0, "")  # no progress lines below 10,000 characters
    assert out == model.generate("ab", 600, seed=3) + "\n"

    code, out, err = run_cli(["sample", str(model_dir), "--length", "30", "--seed", "1", "--temperature", "0", "1.5"])
    assert code == 0, err
    cold, hot = (model.generate("\n", 30, temperature=t, seed=1, include_prompt=False) for t in (0.0, 1.5))
    assert out == f"----- temperature 0 -----\n{cold}\n\n----- temperature 1.5 -----\n{hot}\n"


def test_cli_refuses_a_length_above_the_limit_before_opening_the_model(tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty"  # a folder, so the MODEL check passes, but opening it would fail (status 1)
    not_a_model.mkdir()
    too_long = MAX_LENGTH + 1
    code, out, err = run_cli(["sample", str(not_a_model), "--length", str(too_long)])
    assert code == 2 and out == ""
    (message,) = [line for line in err.splitlines() if "error:" in line]
    assert f"argument --length: {too_long} is above the limit of {MAX_LENGTH} characters" in message
    assert f"--max-length {too_long}" in message and "config.json" not in err

    code, _, err = run_cli(["sample", str(not_a_model), "--length", "20", "--max-length", "10"])
    assert code == 2 and "20 is above the limit of 10 characters" in err

    code, _, err = run_cli(["sample", str(not_a_model), "--length", str(MAX_LENGTH)])
    assert code == 1 and "config.json" in err  # the limit itself is allowed: on to opening the model

    code, _, err = run_cli(["sample", str(not_a_model), "--max-length", "0"])
    assert code == 2 and "--max-length" in err and "'0'" in err


def test_cli_max_length_lets_a_longer_sample_through(model: CharLSTM, model_dir: Path) -> None:
    code, out, err = run_cli(["sample", str(model_dir), "--length", "40", "--max-length", "40", "--seed", "0"])
    assert code == 0, err
    assert out == model.generate("\n", 40, seed=0, include_prompt=False) + "\n"
    # Per sample, with several temperatures: two samples of 40 characters are within a limit of 40.
    argv = ["sample", str(model_dir), "--length", "40", "--max-length", "40", "--temperature", "0", "1"]
    code, out, err = run_cli(argv)
    assert code == 0, err
    assert out.count("----- temperature") == 2


def test_cli_reports_progress_at_every_tenth(model_dir: Path) -> None:
    code, out, err = run_cli(["sample", str(model_dir), "--length", "20000", "--seed", "0"])
    assert code == 0
    assert len(out) == 20_001 and out.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 10, err
    for step, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"sample: {2000 * step:,} / 20,000 characters \([\d,]+/s\)", line), line


def _start_sample(model_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny steps: a second thread only waits on a shared machine
    argv = [sys.executable, "-c", ENTRY, "sample", str(model_dir), "--seed", "0", *args]
    # A shell that starts a job in the background (`nohup pytest &`, some CI runners) leaves SIGINT ignored in it and
    # its children, and Python then installs no KeyboardInterrupt handler; give the child the terminal's default.
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read_stdout(proc: subprocess.Popen[bytes], size: int, timeout: float = 60.0) -> bytes:
    """The first ``size`` bytes of the child's stdout, failing (not hanging) if they take over ``timeout`` seconds.

    Read from the file descriptor, not the buffered reader: select() cannot see bytes a buffer already holds.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < size:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"only {len(data)} bytes of stdout after {timeout:g} s: the text is not streamed"
        chunk = os.read(fd, size - len(data))
        assert chunk, f"stdout closed after {len(data)} bytes (status {proc.wait()})"
        data += chunk
    return data


def test_cli_streams_its_text_while_it_runs_and_ctrl_c_ends_it_quietly(model_dir: Path) -> None:
    proc = _start_sample(model_dir, "--length", "900000")  # minutes of sampling if it were all done first
    try:
        assert proc.stderr is not None
        assert len(_read_stdout(proc, 1000).decode()) == 1000  # a tiny vocabulary of one-byte characters
        assert proc.poll() is None  # the text came while sampling goes on
        proc.send_signal(signal.SIGINT)
        # Read on while it stops: its last buffered text may fill the pipe, and a writer blocked on a pipe nobody
        # reads never exits.
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130
        stderr = err.decode()
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
        assert stderr.strip().splitlines()[-1] == "lstm-interp sample: interrupted", stderr
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_ends_quietly_when_the_reader_closes_the_pipe(model_dir: Path) -> None:
    proc = _start_sample(model_dir, "--length", "900000")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        _read_stdout(proc, 10)  # a reader such as `head -c 10`: a few bytes, then gone
        proc.stdout.close()
        assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports `yes | head`
        stderr = proc.stderr.read().decode()
        assert "Traceback" not in stderr and "Broken pipe" not in stderr and "Exception ignored" not in stderr, stderr
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
