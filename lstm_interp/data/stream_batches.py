"""Whole batches for truncated backpropagation through time: parallel streams that continue from batch to batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lstm_interp.data.window_dataset import check_sizes, ids_from_pickle_state, ids_pickle_state


class StreamBatches(IterableDataset[tuple[torch.Tensor, torch.Tensor, bool]]):
    """Batches whose rows carry on from one batch to the next, so a model can keep its hidden state (as char-rnn).

    The ids are cut into ``batch_size * world_size`` contiguous streams of equal length ``L`` (the remainder is
    dropped); this process reads the ``batch_size`` streams of its ``rank``. Batch ``i`` holds, in row ``r``,
    steps ``i*T`` to ``i*T + T`` of stream ``r`` (``T = seq_len``), so row ``r`` of batch ``i + 1`` starts where
    row ``r`` of batch ``i`` stopped. Each item is a whole batch ``(x, y, reset)``: ``x`` and ``y`` are
    ``torch.long`` of shape ``(batch_size, seq_len)``, ``y`` being ``x`` shifted by one step, and ``reset`` is
    ``True`` only for the first batch of a pass, when the model must forget the state it carries. Use it with
    ``DataLoader(dataset, batch_size=None)``.

    Under DDP each rank reads its own streams; Lightning does not shard an ``IterableDataset`` itself. With
    DataLoader workers, worker ``k`` of ``n`` makes batches ``k, k+n, ...``; the loader takes one batch from each
    worker in turn, so the order is kept.

    Args:
        ids: the 1-D array of ids (a slice of :attr:`EncodedCorpus.ids`, typically).
        batch_size: streams, that is rows per batch, for this process.
        seq_len: steps per batch, at least 2.
        rank: this process's index among ``world_size`` processes.
        world_size: the number of processes sharing the ids.

    Raises:
        ValueError: for a non-positive ``batch_size`` or ``world_size``, ``seq_len`` below 2, a ``rank`` outside
            ``[0, world_size)`` or ``ids`` that are not one-dimensional.

    Example::

        >>> batches = StreamBatches(np.arange(26), batch_size=2, seq_len=4)
        >>> len(batches)
        3
        >>> [(x.tolist(), reset) for x, y, reset in batches][:2]
        [([[0, 1, 2, 3], [13, 14, 15, 16]], True), ([[4, 5, 6, 7], [17, 18, 19, 20]], False)]
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, *, rank: int = 0, world_size: int = 1) -> None:
        check_sizes(batch_size=batch_size, seq_len=seq_len)
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"`world_size` must be a positive integer, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"`rank` must be in [0, {world_size}), got {rank!r}")
        if np.ndim(ids) != 1:
            raise ValueError(f"`ids` must be one-dimensional, got shape {np.shape(ids)}")
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.rank = rank
        self.world_size = world_size

    @property
    def num_streams(self) -> int:
        """Streams over all processes: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    @property
    def stream_len(self) -> int:
        """Ids in each stream."""
        return len(self.ids) // self.num_streams

    @property
    def rows(self) -> range:
        """The indices of the streams this process reads."""
        return range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def __len__(self) -> int:
        # Every batch needs one more id per stream for its last target.
        return max(0, (self.stream_len - 1) // self.seq_len)

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Batch ``index`` of a pass: ``(x, y, reset)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} is out of range for {len(self)} batches")
        length = self.stream_len
        streams = self.ids[: self.num_streams * length].reshape(self.num_streams, length)  # a view, not a copy
        start = index * self.seq_len
        block = streams[self.rows.start : self.rows.stop, start : start + self.seq_len + 1]  # (B, T + 1)
        block = torch.from_numpy(block.astype(np.int64))
        return block[:, :-1].contiguous(), block[:, 1:].contiguous(), index == 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
        worker = get_worker_info()
        first, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        for index in range(first, len(self), step):
            yield self.batch(index)

    def __repr__(self) -> str:
        return (
            f"StreamBatches(batches={len(self)}, batch_size={self.batch_size}, seq_len={self.seq_len}, "
            f"rank={self.rank}, world_size={self.world_size}, stream_len={self.stream_len})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ids": ids_pickle_state(self.ids)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "ids": ids_from_pickle_state(state["ids"])})
