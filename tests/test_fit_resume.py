"""``lstm-interp fit|validate --ckpt_path``: a resume that matches the request, or a clear error and nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from cli_run import run_cli

TEXT = 'The quick brown fox jumps over the lazy dog. "Well," said Pierre, "so it is."\n' * 40
OTHER_TEXT = "ZZZ yyy 123 !!! QQQ\n" * 200  # another vocabulary: 9 characters, 3 of them shared
TRAINER = """
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  limit_val_batches: 1
  val_check_interval: 3
  check_val_every_n_epoch: null
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 3-step fit of a tiny model, shared by the tests: its corpus, configs, root folder and checkpoint."""
    folder = tmp_path_factory.mktemp("resume")
    corpus = folder / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    trainer_only = folder / "trainer.yaml"
    trainer_only.write_text(TRAINER, encoding="utf-8")
    config = folder / "tiny.yaml"
    config.write_text(
        TRAINER
        + f"""
model:
  num_layers: 1
  hidden_size: 8
  embedding_size: 4
data:
  files: {corpus}
  batch_size: 4
  seq_len: 16
  cache_dir: {folder / "cache"}
""",
        encoding="utf-8",
    )
    root = folder / "root"
    code, _, err = run_cli(
        ["fit", "--config", str(config), "--trainer.max_steps", "3", "--trainer.default_root_dir", str(root)]
    )
    assert code == 0, err
    (ckpt,) = (root / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    return {"folder": folder, "corpus": corpus, "config": config, "trainer": trainer_only, "root": root, "ckpt": ckpt}


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")} if root.exists() else set()


def test_arguments_that_contradict_the_checkpoint_are_each_named_and_nothing_is_written(run, tmp_path):
    root = tmp_path / "root"
    code, out, err = run_cli(
        [
            "fit",
            "--config",
            str(run["config"]),
            "--ckpt_path",
            str(run["ckpt"]),
            "--model.hidden_size",
            "16",
            "--model.num_layers",
            "2",  # the parser's default, but given: it still contradicts the checkpoint's 1
            "--data.seq_len",
            "20",
            "--trainer.max_steps",
            "6",
            "--trainer.default_root_dir",
            str(root),
        ]
    )
    assert code == 2, err
    message = err.strip()
    assert "\n" not in message and "Traceback" not in err
    assert f"--ckpt_path {str(run['ckpt'])!r} was trained with" in message
    trained, _, asked = message.partition("but the command line asks for")
    for field, had, want in (("model.hidden_size", 8, 16), ("model.num_layers", 1, 2), ("data.seq_len", 16, 20)):
        assert f"{field}={had}" in trained and f"{field}={want}" in asked
    assert "model.embedding_size" not in message  # the config's value agrees with the checkpoint's
    assert "Saved the trained model" not in out
    assert files_under(root) == set()


def test_another_corpus_for_a_resumed_fit_is_named(run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(TEXT, encoding="utf-8")
    code, _, err = run_cli(
        ["fit", "--config", str(run["trainer"]), "--ckpt_path", str(run["ckpt"]), "--data.files", str(other)]
    )
    assert code == 2, err
    assert f"data.files={str(run['corpus'])!r}" in err and f"data.files={str(other)!r}" in err


def test_a_resume_takes_model_and_data_from_the_checkpoint_and_carries_on_from_its_step(run, tmp_path):
    root = tmp_path / "root"
    code, out, err = run_cli(
        [
            "fit",
            "--config",
            str(run["trainer"]),  # no model or data arguments: they come from the checkpoint
            "--ckpt_path",
            str(run["ckpt"]),
            "--data.cache_dir",
            str(run["folder"] / "cache"),
            "--trainer.max_steps",
            "6",  # the checkpoint is written after the validation at step 6
            "--trainer.default_root_dir",
            str(root),
        ]
    )
    assert code == 0, err
    assert "Saved the trained model" in out
    (new,) = (root / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    before = torch.load(run["ckpt"], weights_only=True, map_location="cpu")
    after = torch.load(new, weights_only=True, map_location="cpu")
    assert before["global_step"] == 3 and after["global_step"] == 6
    for key in ("hidden_size", "num_layers", "embedding_size", "vocab"):
        assert after["hyper_parameters"][key] == before["hyper_parameters"][key]
    assert after["datamodule_hyper_parameters"]["seq_len"] == 16
    assert after["datamodule_hyper_parameters"]["files"] == str(run["corpus"])


def test_a_checkpoint_already_at_max_steps_says_so_and_writes_nothing(run):
    before = files_under(run["root"])
    args = ["fit", "--config", str(run["config"]), "--ckpt_path", str(run["ckpt"]), "--trainer.max_steps", "3"]
    code, out, err = run_cli([*args, "--trainer.default_root_dir", str(run["root"])])
    assert code == 0, err
    assert (
        f"checkpoint {str(run['ckpt'])!r} is already at step 3 and --trainer.max_steps is 3: nothing to train, "
        "nothing saved (raise --trainer.max_steps to train further)"
    ) in out
    assert "Saved the trained model" not in out
    assert files_under(run["root"]) == before  # no lightning_logs/version_1, no model folder


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("text", "it is a text file (it starts with 'model: last\\n'), not a checkpoint"),
        ("truncated", "its end is missing, so it is truncated"),
        ("random", "not those of a checkpoint"),
    ],
)
def test_files_that_are_not_checkpoints_are_named_with_the_problem(run, tmp_path, kind, problem):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "text":
        path.write_text("model: last\n", encoding="utf-8")
    elif kind == "truncated":
        data = run["ckpt"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"\x01\x02" + os.urandom(500))
    root = tmp_path / "root"
    args = ["fit", "--config", str(run["config"]), "--ckpt_path", str(path), "--trainer.max_steps", "6"]
    code, out, err = run_cli([*args, "--trainer.default_root_dir", str(root)])
    assert code == 1
    assert err.startswith(f"lstm-interp fit: error: {str(path)!r} is not a PyTorch checkpoint") and problem in err
    assert "Traceback" not in err and "Saved the trained model" not in out
    assert files_under(root) == set()


def test_a_corpus_of_another_vocabulary_is_named_with_both_sizes(run, tmp_path):
    # The corpus the checkpoint was trained on has changed since (its path in the checkpoint now holds other text).
    changed = tmp_path / "corpus.txt"
    changed.write_text(OTHER_TEXT, encoding="utf-8")
    checkpoint = torch.load(run["ckpt"], weights_only=True, map_location="cpu")
    checkpoint["datamodule_hyper_parameters"]["files"] = str(changed)
    ckpt = tmp_path / "changed.ckpt"
    torch.save(checkpoint, ckpt)
    root = tmp_path / "root"
    cache = ["--data.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir", str(root)]
    code, out, err = run_cli(["fit", "--config", str(run["trainer"]), "--ckpt_path", str(ckpt), *cache])
    assert code == 1, err
    assert f"checkpoint {str(ckpt)!r} was trained on a vocabulary of 34 characters" in err
    assert "has 9: only the checkpoint has" in err and "only the data has '!123QZ'" in err
    assert "size mismatch" not in err and "Traceback" not in err and "Saved the trained model" not in out
    assert files_under(root) == set()
    # validate may evaluate on other data, but not on another vocabulary either.
    other = ["--data.files", str(changed)]
    code, _, err = run_cli(
        ["validate", "--config", str(run["trainer"]), "--ckpt_path", str(run["ckpt"]), *other, *cache]
    )
    assert code == 1, err
    assert "lstm-interp validate: error: checkpoint" in err and "--data.vocab" in err
