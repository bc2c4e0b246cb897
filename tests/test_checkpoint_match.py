"""``match_checkpoint`` (``lstm_interp/models/checkpoint_match.py``): a checkpoint held against a run's arguments.

The checkpoints here are the dicts Lightning writes, saved with ``torch.save``; ``tests/test_fit_resume.py`` runs the
same rules through ``lstm-interp fit|validate --ckpt_path`` on real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lstm_interp.models.checkpoint_match import CheckpointMatch, match_checkpoint, source_of

MODEL = {"cell": "lstm", "num_layers": 1, "hidden_size": 8, "embedding_size": 4, "dropout": 0.0, "lr": 0.002}
DATA = {"files": "corpus.txt", "text": None, "dataset": None, "corpus": None, "batch_size": 4, "seq_len": 16,
        "cache_dir": "/cache/a", "num_workers": 0}  # fmt: skip


def save(tmp_path: Path, *, step: int = 3, vocab: str = "ab\n", data: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "run.ckpt"
    checkpoint = {
        "hyper_parameters": {**MODEL, "vocab": vocab},
        "state_dict": {"network.head.weight": torch.zeros(2, 2)},
        "global_step": step,
        "datamodule_hyper_parameters": DATA if data is None else data,
    }
    torch.save(checkpoint, path)
    return path


def test_arguments_left_out_are_taken_from_the_checkpoint(tmp_path: Path) -> None:
    path = save(tmp_path)
    config = {"model": {**MODEL, "hidden_size": 128}, "data": {**DATA, "files": None, "batch_size": 64}}
    match = match_checkpoint(path, config, {"model": None, "data": None})
    assert match is not None and match.conflicts == () and match.conflict_message() is None
    assert match.adopted["model"]["hidden_size"] == 8 and "vocab" not in match.adopted["model"]  # vocab: linked
    assert match.adopted["data"]["batch_size"] == 4 and match.adopted["data"]["files"] == "corpus.txt"
    assert "cache_dir" not in match.adopted["data"] and "num_workers" not in match.adopted["data"]  # run options
    assert match.vocab == "ab\n" and match.global_step == 3 and match.path == str(path)


def test_given_arguments_that_differ_are_conflicts_naming_both_values(tmp_path: Path) -> None:
    path = save(tmp_path)
    config = {"model": {**MODEL, "hidden_size": 16}, "data": {**DATA, "files": "other.txt", "cache_dir": "/b"}}
    given = {"model": {"hidden_size": 16}, "data": {"files": "other.txt", "cache_dir": "/b"}}
    match = match_checkpoint(path, config, given)
    assert match is not None
    assert match.conflicts == (
        ("model.hidden_size=8", "model.hidden_size=16"),
        ("data.files='corpus.txt'", "data.files='other.txt'"),
    )
    message = match.conflict_message()
    assert message is not None and message.startswith(f"--ckpt_path {str(path)!r} was trained with model.hidden_size=8")
    # validate/test may evaluate on other data: only the model's arguments count.
    match = match_checkpoint(path, config, given, fitting=False)
    assert match is not None and match.conflicts == (("model.hidden_size=8", "model.hidden_size=16"),)


def test_equal_paths_written_differently_agree(tmp_path: Path) -> None:
    path = save(tmp_path)
    config = {"model": dict(MODEL), "data": {**DATA, "files": ["./corpus.txt"]}}
    match = match_checkpoint(path, config, {"model": {"lr": 0.002}, "data": {"files": ["./corpus.txt"]}})
    assert match is not None and match.conflicts == () and "files" not in match.adopted.get("data", {})


def test_another_source_is_one_conflict(tmp_path: Path) -> None:
    path = save(tmp_path)
    config = {"model": dict(MODEL), "data": {**DATA, "files": None, "corpus": "war_and_peace"}}
    match = match_checkpoint(path, config, {"data": {"corpus": "war_and_peace"}})
    assert match is not None
    assert match.conflicts == (("data.files='corpus.txt'", "data.corpus='war_and_peace'"),)


@pytest.mark.parametrize("name", ["last", "best", "hpc", "registry:me/model", "s3://bucket/run.ckpt"])
def test_names_lightning_resolves_are_left_to_it(name: str) -> None:
    assert match_checkpoint(name, {"model": {}, "data": {}}) is None


def test_files_that_are_not_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        match_checkpoint(tmp_path / "missing.ckpt", {"model": {}})
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="it is a text file"):
        match_checkpoint(text, {"model": {}})
    with pytest.raises(TypeError, match="`config` must map 'model'"):
        match_checkpoint(text, {"data": {}})


def test_nothing_to_train_at_or_past_max_steps(tmp_path: Path) -> None:
    match = match_checkpoint(save(tmp_path, step=5), {"model": dict(MODEL), "data": dict(DATA)})
    assert match is not None
    assert match.nothing_to_train(10) is None and match.nothing_to_train(-1) is None
    assert match.nothing_to_train(None) is None
    message = match.nothing_to_train(5)
    assert message is not None and "is already at step 5 and --trainer.max_steps is 5: nothing to train" in message


def test_check_vocab_names_the_difference_and_the_way_out() -> None:
    match = CheckpointMatch(path="run.ckpt", vocab="abc")
    match.check_vocab("abc", {}, fitting=True)  # the same: nothing to say
    with pytest.raises(ValueError, match="only the checkpoint has 'c', only the data has 'xy'") as caught:
        match.check_vocab("abxy", {"files": "b.txt"}, fitting=True)
    assert "vocabulary of 3 characters, but the data (data.files='b.txt') has 4" in str(caught.value)
    assert "use the corpus it was trained on" in str(caught.value)
    with pytest.raises(ValueError, match="the same characters in another order; evaluate it on text of its"):
        match.check_vocab("cba", {"text": "cab"}, fitting=False)
    CheckpointMatch(path="run.ckpt").check_vocab("anything", {}, fitting=True)  # no vocabulary saved: no check


def test_source_of() -> None:
    assert source_of({"files": ["a.txt", Path("b.txt")]}) == "data.files=['a.txt', 'b.txt']"
    assert source_of({"text": "abcd", "files": None}) == "a text of 4 characters"
    assert source_of({}) == "no source"
