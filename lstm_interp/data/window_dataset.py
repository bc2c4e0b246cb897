"""Map-style dataset of non-overlapping training windows, sliced from the (memory-mapped) ids on access."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def ids_pickle_state(ids: np.ndarray) -> tuple:
    """A picklable stand-in for ``ids``: a slice of a memmap becomes (file, dtype, byte offset, length), not a copy.

    DataLoader workers started with ``spawn`` (the default on macOS and Windows) receive their dataset by pickle,
    and numpy pickles a memmap as a whole in-memory array; reopening the file in the worker keeps it on disk.
    """
    mapped = getattr(ids, "_mmap", None)
    on_disk = isinstance(ids, np.memmap) and ids.filename is not None and mapped is not None
    if on_disk and ids.ndim == 1 and ids.flags.c_contiguous and len(ids):
        # numpy maps from `offset` rounded down to the allocation granularity; a slice lies somewhere inside.
        base = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
        start = ids.offset - ids.offset % mmap.ALLOCATIONGRANULARITY + (ids.ctypes.data - base)
        return ("memmap", ids.filename, ids.dtype.str, start, len(ids))
    return ("array", np.asarray(ids))


def ids_from_pickle_state(state: tuple) -> np.ndarray:
    """Undo :func:`ids_pickle_state`: reopen the memmap (read-only) or return the array."""
    if state[0] == "memmap":
        _, filename, dtype, start, length = state
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=start, shape=(length,))
    return state[1]


def check_sizes(batch_size: int | None = None, seq_len: int | None = None) -> None:
    """Raise ``ValueError`` for a ``batch_size`` below 1 or a ``seq_len`` below 2 (``None`` skips the check)."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    # One step of context and one target are the least a window can hold and still teach anything.
    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2):
        raise ValueError(f"`seq_len` must be an integer of at least 2, got {seq_len!r}")


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Non-overlapping windows of ``seq_len + 1`` ids, stride ``seq_len``: item ``i`` is an input and its target.

    ``x = ids[i*T : i*T + T]`` and ``y = ids[i*T + 1 : i*T + T + 1]`` (``T = seq_len``), both ``torch.long`` of
    shape ``(T,)``: ``y`` is ``x`` shifted by one. The windows are sliced from ``ids`` only when asked for, so a
    memory-mapped corpus is never copied whole; pickling (for DataLoader workers) reopens the file instead.

    Args:
        ids: the 1-D array of ids (a slice of :attr:`EncodedCorpus.ids`, typically).
        seq_len: steps per window, at least 2.

    Raises:
        ValueError: for ``seq_len`` below 2 or ``ids`` that are not one-dimensional.

    Example::

        >>> data = WindowDataset(np.arange(10), seq_len=4)
        >>> len(data)
        2
        >>> x, y = data[1]
        >>> x.tolist(), y.tolist()
        ([4, 5, 6, 7], [5, 6, 7, 8])
    """

    def __init__(self, ids: np.ndarray, seq_len: int) -> None:
        check_sizes(seq_len=seq_len)
        if np.ndim(ids) != 1:
            raise ValueError(f"`ids` must be one-dimensional, got shape {np.shape(ids)}")
        self.ids = ids
        self.seq_len = seq_len

    def __len__(self) -> int:
        # The last window needs one id beyond its inputs, for the final target.
        return max(0, (len(self.ids) - 1) // self.seq_len)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"window {index} is out of range for a dataset of {count} windows")
        start = (index % count) * self.seq_len
        window = torch.from_numpy(self.ids[start : start + self.seq_len + 1].astype(np.int64))
        return window[:-1], window[1:]

    def __repr__(self) -> str:
        return f"WindowDataset(windows={len(self)}, seq_len={self.seq_len}, ids={len(self.ids)})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ids": ids_pickle_state(self.ids)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "ids": ids_from_pickle_state(state["ids"])})
