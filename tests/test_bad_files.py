"""Files that are broken, hostile or not what was asked for get a message naming the file, not a traceback (issue 21).

Each case failed before its fix: a deeply nested ``manifest.json``/``index.json``/``config.json``/``vocab.json``
raised RecursionError, an index header with fewer characters than its token ids raised IndexError, a folder given as
a corpus file said "does not exist", and a corpus file could not be pinned to its sha256.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import tiny_char_lstm

from lstm_interp.analysis.state_index import StateIndex
from lstm_interp.config import ConfigError
from lstm_interp.data.char_datamodule import CharDataModule
from lstm_interp.hub.load_pretrained import load_pretrained
from lstm_interp.manifest import ManifestError, read_manifest
from lstm_interp.vocab import CharVocab, VocabularyError

pytestmark = pytest.mark.usefixtures("one_thread")

NESTED = "[" * 100_000 + "]" * 100_000  # far past Python's recursion limit when parsed


@pytest.fixture
def index_folder(tmp_path):
    model = tiny_char_lstm(num_layers=1, hidden_size=4)
    return StateIndex.build(model, "ab ba ab. " * 20, tmp_path / "index", chunk_chars=16).path


def test_a_deeply_nested_manifest_is_named_not_a_recursion_error(tmp_path):
    (tmp_path / "manifest.json").write_text(NESTED)
    with pytest.raises(ManifestError, match=r"manifest '.*manifest\.json' is JSON nested too deeply"):
        read_manifest(tmp_path)


def test_a_deeply_nested_index_header_is_named(index_folder):
    (index_folder / "index.json").write_text(NESTED)
    with pytest.raises(ValueError, match=r"state index header '.*index\.json' is JSON nested too deeply"):
        StateIndex.open(index_folder)


def test_deeply_nested_model_files_are_named(tmp_path):
    model = tiny_char_lstm(num_layers=1, hidden_size=4)
    model.save_pretrained(tmp_path / "model")
    broken = tmp_path / "broken"
    for name, error in (("config.json", ConfigError), ("vocab.json", VocabularyError)):
        shutil.copytree(tmp_path / "model", broken, dirs_exist_ok=True)
        (broken / name).write_text(NESTED)
        with pytest.raises((error, ManifestError), match=r"nested too deeply|changed|sha256"):
            load_pretrained(broken)
    (tmp_path / "vocab.json").write_text(NESTED)
    with pytest.raises(VocabularyError, match=r"vocabulary file '.*vocab\.json' is JSON nested too deeply"):
        CharVocab.load(tmp_path / "vocab.json")


def test_an_index_header_with_fewer_characters_than_its_ids_is_named(index_folder):
    header = json.loads((index_folder / "index.json").read_text())
    header["chars"] = header["chars"][:1]  # the tokens hold ids up to the vocabulary's size
    (index_folder / "index.json").write_text(json.dumps(header))
    index = StateIndex.open(index_folder)  # the manifest's hashes are checked only with verify=True
    with pytest.raises(ValueError, match=r"tokens\.bin holds id \d+ \(at step \d+\), but index\.json lists only 1 "):
        index.text(0, 20)
    with pytest.raises(ValueError, match="lists only 1 characters"):
        index.passage((0, 4))


def test_a_folder_given_as_a_corpus_file_is_called_a_folder(tmp_path):
    (tmp_path / "a.txt").write_text("hello world " * 50)
    expected = r"corpus file '.*' is a folder, not a text file; give the text files in it as a list"
    with pytest.raises(IsADirectoryError, match=expected):
        _ = CharDataModule(files=str(tmp_path), batch_size=2, seq_len=4).vocab


def test_a_corpus_file_with_another_sha256_stops_before_training(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("hello world " * 50)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    CharDataModule(files=str(path), sha256=digest, batch_size=2, seq_len=4)  # the right one passes
    path.write_text("hello world " * 49 + "HELLO WORLD ")
    changed = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=rf"'{path}' has sha256 {changed}, expected {digest}"):
        CharDataModule(files=str(path), sha256=digest, batch_size=2, seq_len=4)
    with pytest.raises(FileNotFoundError, match=rf"'{tmp_path / 'gone.txt'}' does not exist \(expected sha256"):
        CharDataModule(files=str(tmp_path / "gone.txt"), sha256=digest, batch_size=2, seq_len=4)
    with pytest.raises(ValueError, match=r"`sha256` must be 64 hexadecimal digits, got 'abc'"):
        CharDataModule(files=str(path), sha256="abc", batch_size=2, seq_len=4)
    with pytest.raises(ValueError, match=r"one digest per file: 2 file\(s\), got 1"):
        CharDataModule(files=[str(path), str(path)], sha256=digest, batch_size=2, seq_len=4)
    with pytest.raises(ValueError, match=r"the corpus is not given as files"):
        CharDataModule(text="hello world " * 50, sha256=digest, batch_size=2, seq_len=4)
