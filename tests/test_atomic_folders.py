"""Whole-folder writes (``lstm_interp._io.atomic_folder``) and manifests, with real processes: concurrent savers
leave one whole model, a SIGKILL at any moment leaves the previous folder, leftovers of killed runs are removed, and
a mixed folder is refused on load with the names of the files that disagree."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lstm_interp import CharLSTM
from lstm_interp._io import PARTIAL_MARK, atomic_folder, remove_stale_partials
from lstm_interp.manifest import ManifestError, verify_manifest
from lstm_interp.models.model_files import MODEL_FILES

# A writer process: save model <seed> into FOLDER over and over (or ROUNDS times after a start signal).
WRITER = """
import os, sys, time
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from conftest import tiny_char_lstm
folder, seed, rounds, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
vocab = 'ab{{}}"\\n .xy' if seed % 2 else 'cd[]<>\\n ,z'
model = tiny_char_lstm(vocab, seed=seed, hidden_size=8 + 8 * (seed % 2 and int(os.environ.get('SIZES', 0))))
model.save_pretrained(folder + '.ref' + str(seed))
print('ready', flush=True)
while time.time() < start:
    time.sleep(0.001)
for _ in range(rounds):
    model.save_pretrained(folder)
"""


def _writer(tmp_path: Path, folder: Path, seed: int, rounds: int, start: float, **env: str) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, str(script), str(folder), str(seed), str(rounds), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def _digests(folder: Path) -> dict[str, str]:
    """The sha256 of config and vocab, and of the weights' tensors (safetensors orders its header's metadata
    differently from one save to the next, so the file's bytes are not a model's identity)."""
    digests = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in MODEL_FILES[:2]}
    tensors = load_file(folder / "model.safetensors")
    weights = hashlib.sha256()
    for name in sorted(tensors):
        weights.update(name.encode() + tensors[name].numpy().tobytes())
    return digests | {"weights": weights.hexdigest()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if PARTIAL_MARK in p.name or p.name.endswith(".tmp"))


def _save_when_released(model: CharLSTM, folder: Path, barrier: multiprocessing.synchronize.Barrier) -> None:
    torch.set_num_threads(1)
    barrier.wait(timeout=60)
    model.save_pretrained(folder)


@pytest.mark.parametrize("sizes", ["same", "different"])
def test_concurrent_savers_leave_one_whole_model(tmp_path, make_model, sizes):
    """Two forked processes save two models (other weights and characters) into one folder at the same moment,
    round after round; after every round the folder is one of them, whole, and loads with its manifest agreeing."""
    folder = tmp_path / "model"
    models = [
        make_model('ab{}"\n .xy', seed=1),
        make_model('cd[]<>\n ,z', seed=2, hidden_size=16 if sizes == "different" else 8),
    ]
    refs = []
    for i, model in enumerate(models):
        model.save_pretrained(tmp_path / f"ref{i}")
        refs.append(_digests(tmp_path / f"ref{i}"))
    context = multiprocessing.get_context("fork")  # real processes, without importing torch again in each
    winners = set()
    for _ in range(40):
        barrier = context.Barrier(2)
        writers = [context.Process(target=_save_when_released, args=(m, folder, barrier)) for m in models]
        for w in writers:
            w.start()
        for w in writers:
            w.join(timeout=120)
            assert w.exitcode == 0
        found = _digests(folder)
        assert found in refs  # one writer's files, all three of them
        winners.add(refs.index(found))
        CharLSTM.from_pretrained(folder)  # loads, its manifest agreeing
    assert _leftovers(tmp_path) == []
    assert winners  # (which one wins each round is up to the scheduler)


def test_a_saver_killed_at_any_moment_leaves_the_previous_model_or_none(tmp_path):
    folder = tmp_path / "model"
    rng = random.Random(0)
    kills = 0
    for attempt in range(8):
        writer = _writer(tmp_path, folder, 1 + attempt % 2, 1_000_000, 0)
        assert writer.stdout.readline().strip() == "ready"  # it has saved its reference copy; now it saves in a loop
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        kills += writer.returncode == -signal.SIGKILL
        if folder.exists():  # never half a folder: one whole model, whose manifest agrees
            refs = [_digests(Path(f"{folder}.ref{seed}")) for seed in (1, 2) if Path(f"{folder}.ref{seed}").exists()]
            assert _digests(folder) in refs
            verify_manifest(folder, MODEL_FILES)
    assert kills == 8
    # What the killed writers left beside the folder (their locks died with them) goes with the next save.
    CharLSTM.from_pretrained(Path(f"{folder}.ref1")).save_pretrained(folder)
    assert _leftovers(tmp_path) == []


def test_stale_partials_are_removed_but_a_live_writers_is_kept(tmp_path):
    target = tmp_path / "out"
    stale = tmp_path / f".out{PARTIAL_MARK}dead"
    stale.mkdir()
    (stale / "cells.json").write_text("{}")
    with atomic_folder(target) as live:  # entering removed the stale one; this one is locked while we build it
        assert not stale.exists() and live.is_dir()
        (live / "a.txt").write_text("a")
        assert remove_stale_partials(tmp_path, f".out{PARTIAL_MARK}") == []
        assert live.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "a.txt").read_text() == "a"


def test_a_hand_mixed_model_folder_is_refused_naming_the_files(tmp_path, make_model):
    a, b = tmp_path / "a", tmp_path / "b"
    make_model(seed=1).save_pretrained(a)
    make_model(seed=2).save_pretrained(b)
    (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())  # same shapes: loads fine
    with pytest.raises(ManifestError, match=r"model\.safetensors \(sha256 differs\)") as info:
        CharLSTM.from_pretrained(a)
    assert str(a) in str(info.value) and "vocab.json" not in str(info.value)
    manifest = json.loads((a / "manifest.json").read_text())
    del manifest["files"]["vocab.json"]
    (a / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"vocab\.json \(not listed\)"):
        CharLSTM.from_pretrained(a)
    (a / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        CharLSTM.from_pretrained(a)
    (a / "manifest.json").unlink()  # a folder of an older version, without a manifest, still loads
    assert CharLSTM.from_pretrained(a).config == make_model().config


def test_save_pretrained_refuses_a_folder_with_other_files(tmp_path, make_model):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text("print('mine')\n")
    with pytest.raises(FileExistsError, match=r"'.*project' holds train\.py, which a model run does not write"):
        make_model().save_pretrained(folder)
    assert [p.name for p in folder.iterdir()] == ["train.py"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        make_model().save_pretrained(tmp_path / "file")


def test_an_older_model_folder_is_replaced(tmp_path, make_model):
    folder = tmp_path / "m"
    make_model(seed=1).save_pretrained(folder)
    (folder / "manifest.json").unlink()  # as an older version wrote it
    (folder / "results.json").write_text("{}")
    make_model(seed=2).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "manifest.json", "model.safetensors", "vocab.json"
    ]


ANALYZE = "import sys; from lstm_interp.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_an_analyze_killed_at_random_moments_leaves_the_previous_analysis(tmp_path, make_model):
    text = 'a{b "ab c"}\n(c {"a b"} ba)\n' * 100
    model_dir, text_file, out = tmp_path / "model", tmp_path / "text.txt", tmp_path / "out"
    make_model(text, from_text=True, hidden_size=32).save_pretrained(model_dir)
    text_file.write_text(text, encoding="utf-8")
    argv = [sys.executable, "-c", ANALYZE, "analyze", str(model_dir), str(text_file), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*argv, "--features", "inside_quotes"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    started = time.perf_counter()
    subprocess.run([*argv, "--features", "brace_depth", "--baseline-text", str(text_file)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    duration = time.perf_counter() - started
    rng = random.Random(1)
    outcomes = []
    for _ in range(4):
        run = subprocess.Popen([*argv, "--features", "brace_depth", "--baseline-text", str(text_file)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.2, 1.0) * duration)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        if files != before:  # the run had finished: then it is the new analysis, whole and as its manifest says
            manifest = json.loads(files["manifest.json"])
            assert {"comparison.json", "report.html"} <= set(files)
            assert set(manifest["files"]) == set(files) - {"manifest.json"}
            assert manifest["arguments"]["features"] == ["brace_depth"]
            before = files
        outcomes.append(run.returncode)
    subprocess.run([*argv, "--features", "inside_quotes"], env=env, check=True, capture_output=True)
    assert _leftovers(tmp_path) == []  # the killed runs' partial folders went with the next run
    assert -signal.SIGKILL in outcomes


# ------------------------------------------------------------------------ nothing deleted we did not write (issue 21)
def test_a_rerun_keeps_files_the_earlier_run_did_not_write(tmp_path, make_model):
    """A folder with a manifest of the same kind is replaced only if the manifest accounts for every file in it."""
    from cli_run import run_cli

    from lstm_interp.report.run_analysis import run_analysis

    model, text = make_model(), "ab {x} " * 20
    out = tmp_path / "analysis"
    run_analysis(model, text, out, features=["brace_depth"])
    (out / "notes.txt").write_text("my notes\n")
    with pytest.raises(FileExistsError, match=r"holds notes\.txt \(not in its manifest\.json\).*--overwrite"):
        run_analysis(model, text, out, features=["brace_depth"])
    assert (out / "notes.txt").read_text() == "my notes\n"
    (out / "notes.txt").unlink()
    (out / "cells.json").write_text("{}")  # a file of the run, edited by hand
    with pytest.raises(FileExistsError, match=r"cells\.json \(changed since the run wrote it\)"):
        run_analysis(model, text, out, features=["brace_depth"])
    run_analysis(model, text, out, features=["brace_depth"], overwrite=True)  # said explicitly: replaced
    assert json.loads((out / "cells.json").read_text())["features"]

    # A manifest planted in a folder of someone's files does not make them ours.
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\documentclass{book}\n")
    (thesis / "manifest.json").write_text(json.dumps({"format": 1, "kind": "analysis", "files": {}}))
    with pytest.raises(FileExistsError, match=r"holds thesis\.tex"):
        run_analysis(model, text, thesis, features=["brace_depth"])
    assert (thesis / "thesis.tex").is_file()

    # The same rule for model folders, and the CLI names the files and the flag, exiting without a traceback.
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(FileExistsError, match=r"notes\.txt \(not in its manifest\.json\)"):
        model.save_pretrained(folder)
    model.save_pretrained(folder, overwrite=True)
    assert not (folder / "notes.txt").exists()
    (tmp_path / "text.txt").write_text(text)
    (out / "notes.txt").write_text("again\n")
    args = ["analyze", str(folder), str(tmp_path / "text.txt"), "--out", str(out), "--features", "brace_depth"]
    code, _, err = run_cli(args)
    assert code == 1 and "notes.txt (not in its manifest.json)" in err and "--overwrite" in err, err
    assert "Traceback" not in err and (out / "notes.txt").exists()
    code, _, err = run_cli([*args, "--overwrite"])
    assert code == 0, err
    assert not (out / "notes.txt").exists()
