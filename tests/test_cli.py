"""Tests for lstm_interp/cli: the ``lstm-interp`` console script and its subcommands."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_run import run_cli as _run
from hub_server import free_port, hub_env

from lstm_interp.cli.char_lstm_cli import CharLSTMCLI
from lstm_interp.cli.main import COMMANDS
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import Trace

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXT = 'The quick brown fox jumps over the lazy dog. "Well," said Pierre, "so it is."\n' * 60
HIDDEN = 12


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus_cache")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("config")
    corpus = folder / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    config = folder / "tiny.yaml"
    config.write_text(
        f"""
seed_everything: 0
model:
  num_layers: 1
  hidden_size: {HIDDEN}
  embedding_size: 8
data:
  files: {corpus}
  batch_size: 4
  seq_len: 16
  cache_dir: {cache_dir}
trainer:
  accelerator: cpu
  devices: 1
  val_check_interval: 3
  check_val_every_n_epoch: null
  limit_val_batches: 2
  limit_test_batches: 2
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        monitor: val/loss
        filename: best
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, config_file: Path) -> dict[str, Path]:
    """One ``lstm-interp fit`` run shared by the tests below: its root folder, saved model and checkpoint."""
    root = tmp_path_factory.mktemp("fit")
    code, out, err = _run(
        ["fit", "--config", str(config_file), "--trainer.max_steps", "3", "--trainer.default_root_dir", str(root)]
    )
    assert code == 0, err
    model_dir = root / "lightning_logs" / "version_0" / "model"
    assert str(model_dir) in out
    (ckpt,) = (root / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    return {"root": root, "model": model_dir, "ckpt": ckpt, "config": config_file}


# ---------------------------------------------------------------------------------------------- fit / validate / test
def test_fit_saves_a_loadable_model(trained: dict[str, Path]) -> None:
    model = CharLSTM.from_pretrained(trained["model"])
    assert model.config.hidden_size == HIDDEN
    assert model.vocab is not None and model.vocab.chars == "".join(sorted(set(TEXT)))


def test_validate_loads_the_checkpoint(trained: dict[str, Path]) -> None:
    # The checkpoint was written right after the validation at step 3; validating it again on the same batches
    # must give the score ModelCheckpoint recorded, which it only can with the trained weights loaded.
    checkpoint = torch.load(trained["ckpt"], weights_only=True, map_location="cpu")
    (state,) = (v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint"))
    args = ["validate", "--config", str(trained["config"]), "--ckpt_path", str(trained["ckpt"])]
    cli = CharLSTMCLI(args=[*args, "--trainer.default_root_dir", str(trained["root"])])
    assert cli.config["validate"]["weights_only"] is True
    val_loss = float(cli.trainer.callback_metrics["val/loss"])
    assert val_loss == pytest.approx(float(state["best_model_score"]), rel=1e-5)
    assert float(cli.trainer.callback_metrics["val/bpc"]) == pytest.approx(val_loss / math.log(2), rel=1e-5)


def test_test_subcommand_with_ckpt_path(trained: dict[str, Path]) -> None:
    code, out, err = _run(
        [
            "test",
            "--config",
            str(trained["config"]),
            "--ckpt_path",
            str(trained["ckpt"]),
            "--trainer.default_root_dir",
            str(trained["root"]),
        ]
    )
    assert code == 0, err
    assert "test/bpc" in out


def test_bad_lightning_argument_exits_with_2() -> None:
    code, _, err = _run(["fit", "--model.hidden_size", "many"])
    assert code == 2
    assert "many" in err


def test_lightning_subcommand_help_exits_with_0() -> None:
    code, out, _ = _run(["fit", "--help"])
    assert code == 0
    assert "--model.hidden_size" in out and "--data.corpus" in out


def test_bundled_configs_parse() -> None:
    for name in ("tiny.yaml", "novel.yaml", "code.yaml", "foldoc.yaml"):
        code, out, err = _run(["fit", "--config", str(REPO_ROOT / "configs" / name), "--print_config"])
        assert code == 0, f"{name}: {err}"
        assert "hidden_size" in out


# ---------------------------------------------------------------------------------------------- sample
def test_sample_is_reproducible_and_agrees_between_folder_and_checkpoint(trained: dict[str, Path]) -> None:
    args = ["--prompt", "The ", "--length", "40", "--seed", "7"]
    code, first, err = _run(["sample", str(trained["model"]), *args])
    assert code == 0, err
    assert first.startswith("The ") and len(first.rstrip("\n")) >= 44
    assert _run(["sample", str(trained["model"]), *args])[1] == first
    # The checkpoint holds the weights the folder was saved from (both after step 3).
    code, from_ckpt, err = _run(["sample", str(trained["ckpt"]), *args])
    assert code == 0, err
    assert from_ckpt == first


def test_sample_several_temperatures(trained: dict[str, Path]) -> None:
    code, out, err = _run(["sample", str(trained["model"]), "--length", "20", "--temperature", "0", "0.5", "1.5"])
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("-----")] == [
        "----- temperature 0 -----",
        "----- temperature 0.5 -----",
        "----- temperature 1.5 -----",
    ]


def test_sample_errors(trained: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    code, _, err = _run(["sample", str(missing)])
    assert code == 2 and str(missing) in err

    empty = tmp_path / "empty_model"
    empty.mkdir()
    code, _, err = _run(["sample", str(empty)])
    assert code == 1 and "config.json" in err and str(empty) in err

    code, _, err = _run(["sample", str(trained["model"]), "--prompt", "Zürich€"])
    assert code == 1
    assert "not in the vocabulary" in err and "'€'" in err and "Traceback" not in err

    for bad in ("hot", "-1", "nan"):
        code, _, err = _run(["sample", str(trained["model"]), "--temperature", bad])
        assert code == 2 and f"'{bad}'" in err and "--temperature" in err

    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("hello", encoding="utf-8")
    code, _, err = _run(["sample", str(not_a_checkpoint)])
    assert code == 1 and str(not_a_checkpoint) in err and len(err.strip().splitlines()) == 1


def test_sample_a_pretrained_name_without_a_network(tmp_path: Path) -> None:
    """MODEL may be a pretrained name: with the Hub unreachable, the bundled copy answers, with one warning line."""
    env = hub_env(f"http://127.0.0.1:{free_port()}", tmp_path / "hf_home")  # nothing listens there
    code = "import sys; from lstm_interp.cli.main import main; sys.exit(main(sys.argv[1:]))"
    args = ["sample", "novel", "--prompt", "The ", "--length", "40", "--seed", "0"]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("The ") and len(out.stdout.rstrip("\n")) == 44
    (line,) = out.stderr.strip().splitlines()
    assert "unavailable" in line and "copy of 'novel' bundled" in line


def test_every_model_command_refuses_a_model_that_can_be_nothing(tmp_path: Path) -> None:
    output = str(tmp_path / "t.safetensors")
    for argv in (["sample", "nvel"], ["trace", "nvel", "--text", "ab", "--output", output], ["push", "nvel", "me/x"]):
        code, _, err = _run(argv)
        assert code == 2, (argv, err)
        assert "argument MODEL: 'nvel' is not a folder or a file" in err and "pretrained name (novel" in err
    code, _, err = _run(["sample", "runs/best.ckpt"])  # one slash, yet no repo id: a checkpoint that is not there
    assert code == 2 and "'runs/best.ckpt'" in err


# ---------------------------------------------------------------------------------------------- trace
def test_trace_writes_a_loadable_trace(trained: dict[str, Path], tmp_path: Path) -> None:
    text = "The lazy dog."
    output = tmp_path / "traces" / "dog.safetensors"
    names = ["--names", "layers.*.cell", "log_probs"]
    code, out, err = _run(["trace", str(trained["model"]), "--text", text, "--output", str(output), *names])
    assert code == 0, err
    loaded = Trace.load(output)
    vocab_size = len(set(TEXT))
    assert {name: tuple(t.shape) for name, t in loaded.items()} == {
        "layers.0.cell": (len(text), HIDDEN),
        "log_probs": (len(text), vocab_size),
    }
    assert loaded.text == text
    assert "layers.0.cell" in out and f"({len(text)}, {HIDDEN})" in out


def test_trace_from_file_in_float16(trained: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "dog.txt"
    source.write_text("the dog said so.\n" * 3, encoding="utf-8")
    output = tmp_path / "dog.safetensors"
    args = ["--file", str(source), "-o", str(output), "--dtype", "float16", "--chunk-size", "5"]
    code, _, err = _run(["trace", str(trained["ckpt"]), *args])
    assert code == 0, err
    loaded = Trace.load(output)
    assert loaded["layers.0.forget_gate"].dtype == torch.float16
    assert loaded["layers.0.hidden"].shape == (51, HIDDEN)


def test_trace_errors(trained: dict[str, Path], tmp_path: Path) -> None:
    output = str(tmp_path / "t.safetensors")
    code, _, err = _run(["trace", str(trained["model"]), "--output", output])
    assert code == 2 and "--text" in err
    missing = tmp_path / "missing.txt"
    code, _, err = _run(["trace", str(trained["model"]), "--file", str(missing), "--output", output])
    assert code == 2 and str(missing) in err
    code, _, err = _run(["trace", str(trained["model"]), "--text", "dog", "--output", output, "--names", "nope.*"])
    assert code == 1 and "nope.*" in err
    code, _, err = _run(["trace", str(trained["model"]), "--text", "dog", "--output", output, "--chunk-size", "0"])
    assert code == 2 and "'0'" in err


# ---------------------------------------------------------------------------------------------- demo
def test_demo_with_a_few_steps(tmp_path: Path, cache_dir: Path) -> None:
    out_dir = tmp_path / "demo"
    code, out, err = _run(
        [
            "demo",
            "--output-dir",
            str(out_dir),
            "--max-steps",
            "3",
            "--hidden-size",
            "8",
            "--num-layers",
            "1",
            "--embedding-size",
            "4",
            "--sample-length",
            "30",
            "--cache-dir",
            str(cache_dir),
            "--accelerator",
            "cpu",
        ]
    )
    assert code == 0, err
    model = CharLSTM.from_pretrained(out_dir / "model")
    assert model.config.hidden_size == 8
    assert (out_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((out_dir / "logs").glob("version_*/events.out.tfevents.*"))
    assert str(out_dir / "model") in out
    assert "nats per character" in out and "bits per character" in out
    assert out.count("----- sample at temperature") == 2
    # The activation monitor recorded at the end of training; the summary points at its report and figures.
    (report,) = (out_dir / "logs").glob("version_*/lstm_interp/step_3.html")
    assert str(report) in out
    assert (report.parent / "step_3_cell_text.png").is_file() and str(report.parent / "step_3_cell_text.png") in out
    # Three steps grow no quote cell: the last words say so, name the best unit and its AUC, and show the pretrained
    # model's quote cell beside it; summary.json says which unit each picture shows and where it came from.
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["precision"] and summary["val_loss"] > 0
    quotes = summary["features"]["inside_quotes"]
    assert quotes["source"] == "pretrained" and quotes["model"] == "novel" and quotes["score"] >= 0.95
    own = quotes["trained"]
    assert own["source"] == "trained" and own["model"] == str(out_dir.resolve() / "model") and not own["found"]
    last = out[out.rindex("What it learnt") :]
    assert f"inside_quotes: {own['layer']} unit {own['unit']}, AUC {own['score']:.3f}" in last
    assert "no quote cell this run" in last and "pretrained 'novel' model's quote cell" in last
    assert (out_dir / "quote_cell_beside_pretrained.png").is_file()
    line = summary["features"]["position_in_line"]
    assert line["source"] == "trained" and line["metric"] == "pearson" and 0 <= line["probe_score"] <= 1
    # The folder the demo created keeps itself out of git, so a demo run inside a checkout leaves nothing untracked.
    assert (out_dir / ".gitignore").read_text().splitlines()[-1] == "*"
    assert not list(out_dir.glob(".*.tmp"))  # summary.json was written whole, through a temporary file


def test_demo_last_words_are_honest(tmp_path: Path) -> None:
    from lstm_interp.demo_findings import Finding, last_words, write_summary

    found = Finding("inside_quotes", "layers.1", 35, "cell", "trained", "m", "auc", 0.97, 1.4, 1.0, True, True)
    flat = Finding("inside_quotes", "layers.1", 48, "cell", "trained", "m", "auc", 0.99, -0.02, 1.0, True, False)
    assert last_words([found]) == [
        "  inside_quotes: layers.1 unit 35, AUC 0.970, effect +1.40 on held-out prose: a cell."
    ]
    (line,) = last_words([flat])
    assert "no quote cell this run (it barely changes colour)" in line and "AUC 0.990" in line
    path = write_summary(tmp_path / "summary.json", steps=5, precision="32-true", val_loss=1.5, findings=[found])
    data = json.loads(path.read_text())
    assert data["features"]["inside_quotes"]["unit"] == 35 and data["features"]["inside_quotes"]["source"] == "trained"
    assert "trained" not in data["features"]["inside_quotes"]  # no pretrained stand-in: the run's own unit


def test_run_demo_rejects_bad_values(tmp_path: Path) -> None:
    from lstm_interp.demo import run_demo

    with pytest.raises(ValueError, match="`max_steps` must be >= 1, got 0"):
        run_demo(tmp_path, max_steps=0)
    code, _, err = _run(["demo", "--max-minutes", "soon"])
    assert code == 2 and "'soon'" in err


# ---------------------------------------------------------------------------------------------- top level
def test_unknown_subcommand_and_missing_subcommand() -> None:
    code, _, err = _run(["frobnicate"])
    assert code == 2 and "'frobnicate'" in err
    code, _, err = _run([])
    assert code == 2 and "COMMAND" in err


def test_help_lists_every_subcommand() -> None:
    code, out, _ = _run(["--help"])
    assert code == 0
    for name in COMMANDS:
        assert f"\n    {name} " in out


def test_console_script_help() -> None:
    script = shutil.which("lstm-interp") or str(Path(sys.executable).parent / "lstm-interp")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for name in ("fit", "validate", "test", "sample", "trace", "demo"):
        assert name in result.stdout


def test_unknown_characters_hint_at_the_flag_of_the_command(trained: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = _run(["trace", str(trained["model"]), "--text", "ab\u00e9", "--output", str(tmp_path / "t.st")])
    assert code == 1 and "Pass --skip-unknown to drop them" in err and "on_unknown" not in err
    code, _, err = _run(["sample", str(trained["model"]), "--prompt", "\u00e9", "--length", "3"])
    assert code == 1 and "--prompt" in err and "on_unknown" not in err
    text = tmp_path / "accent.txt"
    text.write_text("abc abc \u00e9 " * 20, encoding="utf-8")
    code, _, err = _run(["atlas", str(trained["model"]), str(text), "--out", str(tmp_path / "atlas")])
    assert code == 1 and "Pass --skip-unknown to drop them" in err and "on_unknown" not in err
    code, _, err = _run(["probe", str(trained["model"]), str(text), "--features", "start_of_word", "--out",
                         str(tmp_path / "probe")])  # fmt: skip
    assert code == 1 and "characters the model knows in TEXT_FILE" in err and "on_unknown" not in err
    code, _, err = _run(["steer", str(trained["model"]), "--prompt", "\u00e9", "--ablate", "layers.0:0", "--samples",
                         "1", "--length", "2", "--out", str(tmp_path / "steer")])  # fmt: skip
    assert code == 1 and "characters the model knows in --prompt" in err and "on_unknown" not in err


def test_silence_stdout_leaves_a_stream_without_a_file_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_interp.cli.main import _silence_stdout

    fake = io.StringIO()
    monkeypatch.setattr("sys.stdout", fake)
    _silence_stdout()  # a StringIO has no file descriptor: nothing to point at devnull
    fake.write("still usable")
    assert fake.getvalue() == "still usable"
