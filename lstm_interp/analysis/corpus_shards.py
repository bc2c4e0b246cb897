"""The shards of a corpus pass: fixed by the corpus and a shard length, never by the number of processes.

A corpus of ``N`` characters is cut into shards of ``shard_chars`` characters, ``[k * S, (k + 1) * S)``; each is
traced from a state **warmed** on the ``prime_chars`` characters before it (traced from zeros, and not counted), so
shard ``k``'s result depends on the corpus and these two lengths only. One process or a hundred trace the same shards
and merge them in the same order, so their results agree (statistics to float rounding, bits and top-k contexts
exactly). Against one uninterrupted stream over the whole corpus, a shard's first characters see a state built from
``prime_chars`` characters rather than from everything before them; ``benchmarks/bench_corpus_pass.py`` measures the
difference (loss per character and the best units).

The processes each take one contiguous block of shards (:class:`RankShards`): rank ``r`` of ``R`` takes shards
``r * n // R`` to ``(r + 1) * n // R``, so each rank's shards continue each other and its accumulator is fed them in
order, and the ranks' accumulators merge, in rank order, into the one-process result. A rank with fewer shards than
another is padded with *no-op* entries (index ``-1``), so that every rank runs the same number of steps and meets the
others at the merge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from lstm_interp.analysis._index_files import KnownText
from lstm_interp.analysis.corpus_scan import CorpusScan
from lstm_interp.vocab import CharVocab

DEFAULT_SHARD_CHARS = 65_536
DEFAULT_PRIME_CHARS = 1_024


@dataclass(frozen=True)
class ShardPlan:
    """Where each shard lies: ``length`` characters cut every ``shard_chars``, each warmed on ``prime_chars``.

    Raises:
        ValueError: a non-positive length or shard length, a negative prime length.
    """

    length: int
    shard_chars: int = DEFAULT_SHARD_CHARS
    prime_chars: int = DEFAULT_PRIME_CHARS

    def __post_init__(self) -> None:
        for name, value, low in (("length", self.length, 1), ("shard_chars", self.shard_chars, 1),
                                 ("prime_chars", self.prime_chars, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")

    @property
    def num_shards(self) -> int:
        """How many shards the corpus has: ``ceil(length / shard_chars)``."""
        return -(-self.length // self.shard_chars)

    def bounds(self, k: int) -> tuple[int, int, int]:
        """``(prime_start, start, stop)`` of shard ``k``: it is warmed on ``[prime_start, start)`` and counted on
        ``[start, stop)``."""
        start = k * self.shard_chars
        return max(0, start - self.prime_chars), start, min(start + self.shard_chars, self.length)

    def rank_block(self, rank: int, world: int) -> range:
        """The shards rank ``rank`` of ``world`` takes: one contiguous block, sizes differing by at most one."""
        n = self.num_shards
        return range(rank * n // world, (rank + 1) * n // world)


def encode_corpus(vocab: CharVocab, scan: CorpusScan) -> np.ndarray:
    """The scanned corpus as ids (the vocabulary's smallest dtype: one byte a character for up to 256 symbols), the
    characters outside the vocabulary dropped as the scan counted them. Every rank holds it."""
    known = KnownText(vocab)
    parts = [vocab.encode_array(piece, on_unknown="skip").astype(vocab.dtype) for _, piece in known.pieces(scan.source)]
    ids = np.concatenate(parts) if parts else np.zeros(0, vocab.dtype)
    if len(ids) != scan.length:
        raise ValueError(f"the corpus changed since it was scanned: {len(ids):,} characters now, {scan.length:,} then")
    return ids


class CorpusShards(Dataset):
    """Shard ``k`` as ``{"index": k, "start": ..., "prime": (P,) ids, "ids": (S,) ids}``; index ``-1`` is a no-op."""

    def __init__(self, ids: np.ndarray, plan: ShardPlan) -> None:
        self.ids, self.plan = ids, plan

    def __len__(self) -> int:
        return self.plan.num_shards

    def __getitem__(self, k: int) -> dict[str, object]:
        if k < 0:
            return {"index": -1}
        prime_start, start, stop = self.plan.bounds(k)
        as_long = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731
        return {"index": k, "start": start, "prime": as_long(self.ids[prime_start:start]),
                "ids": as_long(self.ids[start:stop])}  # fmt: skip


class RankShards(DistributedSampler):
    """This rank's contiguous block of shards, padded with ``-1`` to the largest block, so every rank runs as many
    steps. A ``DistributedSampler``, so that Lightning keeps it as it is instead of wrapping it in its own."""

    def __init__(self, plan: ShardPlan, num_replicas: int, rank: int) -> None:
        self.plan, self.num_replicas, self.rank = plan, num_replicas, rank
        self.block = plan.rank_block(rank, num_replicas)
        self.steps = max(len(plan.rank_block(r, num_replicas)) for r in range(num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter([*self.block, *[-1] * (self.steps - len(self.block))])

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:  # one pass, nothing shuffled
        pass
