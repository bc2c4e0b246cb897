"""lstm_interp._io: atomic writes, and files that follow the umask like the rest of a folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest

from lstm_interp import trace
from lstm_interp._io import atomic_path, atomic_write_text


@pytest.fixture
def umask_022() -> Iterator[int]:
    previous = os.umask(0o022)
    yield 0o644
    os.umask(previous)


def modes(folder) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_every_file_the_package_writes_follows_the_umask(make_model, tmp_path, umask_022):
    # safetensors recreates the file it writes as 0600: before the fix every .safetensors was unreadable to others.
    model = make_model()
    model.save_pretrained(tmp_path / "model")
    trace(model, 'a "b" {x}\n').save(tmp_path / "trace" / "t.safetensors")
    atomic_write_text(tmp_path / "note.txt", "hello")
    found = modes(tmp_path)
    assert {"model.safetensors", "config.json", "vocab.json", "README.md", "t.safetensors", "note.txt"} <= set(found)
    assert set(found.values()) == {umask_022}, found


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []
