"""Lightning checkpoints read without Lightning (``lstm_interp.models.checkpoint``), through ``load_pretrained``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lstm_interp import ConfigError, load_pretrained
from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule
from lstm_interp.models.checkpoint import load_checkpoint, network_from_hparams

TEXT = 'the "cat" sat {on} the mat.\nthe dog sat on the log.\n' * 30
PROBE = 'the "dog" sat.'


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny GRU module after two real optimizer steps, and the checkpoint Lightning wrote of it."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    module = CharLSTMModule(cell="gru", num_layers=2, hidden_size=8, embedding_size=4, lr=1e-2)
    trainer = pl.Trainer(
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=root,
    )
    trainer.fit(module, datamodule=CharDataModule(text=TEXT, batch_size=4, seq_len=16, cache_dir=root / "cache"))
    path = root / "run.ckpt"
    trainer.save_checkpoint(path)
    return {"module": module, "path": path}


def logits(model: torch.nn.Module, text: str = PROBE) -> torch.Tensor:
    with torch.no_grad():
        return model(model.vocab.encode(text)[None])[0]


def test_load_pretrained_reads_a_ckpt_as_the_trained_network(trained):
    module, path = trained["module"], trained["path"]
    model = load_pretrained(path)
    assert not model.training and model.head.weight.dtype == torch.float32
    assert model.config == module.network.config and model.vocab == module.network.vocab
    assert model.config.cell == "gru" and model.config.hidden_size == 8
    assert torch.equal(logits(model), logits(module.network.eval()))
    assert load_pretrained(str(path), dtype=torch.float64).head.weight.dtype == torch.float64
    assert torch.equal(logits(load_checkpoint(path)), logits(model))


def test_the_network_is_shaped_by_the_same_hparams_function(trained):
    module = trained["module"]
    rebuilt = network_from_hparams(module.hparams)
    assert rebuilt.config == module.network.config and rebuilt.vocab == module.network.vocab
    with pytest.raises(ConfigError, match=r"hyperparameters lack \['hidden_size'\]"):
        network_from_hparams({k: v for k, v in module.hparams.items() if k != "hidden_size"})


def test_a_ckpt_loads_without_importing_lightning(trained):
    code = (
        "import sys\n"
        "from lstm_interp import load_pretrained\n"
        f"model = load_pretrained({str(trained['path'])!r})\n"
        "print(model.config.cell, 'lightning' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["gru", "False"]


def edited(trained, tmp_path: Path, edit) -> Path:
    """A copy of the checkpoint, changed by ``edit(checkpoint)``."""
    checkpoint = torch.load(trained["path"], weights_only=True, map_location="cpu")
    edit(checkpoint)
    path = tmp_path / "edited.ckpt"
    torch.save(checkpoint, path)
    return path


def test_files_that_are_not_checkpoints_are_named(trained, tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello", encoding="utf-8")
    truncated = tmp_path / "truncated.ckpt"
    data = trained["path"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path in (text, truncated):
        with pytest.raises(ValueError, match="is not a PyTorch checkpoint, is truncated") as err:
            load_pretrained(path)
        assert str(path) in str(err.value) and "weights_only=True" in str(err.value)
        assert "\n" not in str(err.value)


def test_objects_other_than_tensors_are_refused(tmp_path):
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "extra": Path("x")}, path)
    with pytest.raises(ValueError, match="holds objects other than tensors and plain values"):
        load_pretrained(path)


def test_checkpoints_of_something_else_are_named(trained, tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match=r"other\.ckpt' is not a checkpoint of a CharLSTMModule: it has no"):
        load_pretrained(other)
    bare = tmp_path / "bare.ckpt"
    torch.save(torch.zeros(3), bare)
    with pytest.raises(ValueError, match=r"bare\.ckpt' is not a checkpoint of a CharLSTMModule: it holds a Tensor"):
        load_pretrained(bare)
    resized = edited(trained, tmp_path, lambda c: c["hyper_parameters"].update(hidden_size=9))
    with pytest.raises(ValueError, match=r"edited\.ckpt' is not a checkpoint of a CharLSTMModule: .*size mismatch"):
        load_pretrained(resized)


def test_a_checkpoint_without_vocabulary_is_named(trained, tmp_path):
    path = edited(trained, tmp_path, lambda c: c["hyper_parameters"].update(vocab=None))
    with pytest.raises(ValueError, match=r"checkpoint '.*edited\.ckpt' has no vocabulary in its hyperparameters"):
        load_pretrained(path)


def test_missing_checkpoint_and_revision_for_a_file(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint file '.*best\.ckpt' does not exist"):
        load_pretrained(str(tmp_path / "runs" / "best.ckpt"))
    with pytest.raises(FileNotFoundError, match=r"checkpoint file 'runs/best\.ckpt' does not exist"):
        load_pretrained("runs/best.ckpt")  # one slash, but not a repo id: a checkpoint that is not there
    with pytest.raises(ValueError, match="`revision` applies to Hub repos, got revision='v1' for the checkpoint"):
        load_pretrained(trained["path"], revision="v1")


def test_hyper_parameters_are_plain_values(trained):
    """What makes a weights_only read possible: Lightning stores the module's arguments as plain values."""
    checkpoint = torch.load(trained["path"], weights_only=True, map_location="cpu")
    json.dumps(checkpoint["hyper_parameters"])
    assert all(key.startswith("network.") for key in checkpoint["state_dict"])
