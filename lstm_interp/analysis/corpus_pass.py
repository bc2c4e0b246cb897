"""``corpus_pass``: one pass of a model over a corpus on Lightning's engine, any number of processes and machines.

Every corpus-scale pass of the library (the analysis statistics, ``find_cells`` scores over a corpus, the state
index, the unit atlas, a probe's rows) is a fold: an **accumulator** is fed the trace of each stretch of the corpus in
order (``update(trace, start)``), and two accumulators of consecutive stretches combine into one (``merge(other)``).
``corpus_pass`` runs that fold as a ``Trainer.predict`` over the corpus's shards (:mod:`.corpus_shards`), so it
scales the way training does: ``accelerator``, ``devices``, ``num_nodes`` and ``strategy`` (CPU processes over gloo,
GPUs, several nodes under SLURM or torchrun), and the progress bar is Lightning's, one on rank 0.

1. Every rank encodes the corpus and takes its contiguous block of shards; each shard is traced from a state warmed
   on the characters before it, segment by segment, into the rank's one accumulator.
2. At the rank's last step, every rank sends its accumulator (or the error that stopped it) to rank 0
   (``torch.distributed.gather_object``), which merges them in rank order: the result of one process, whatever the
   number of processes (statistics to float rounding, heaps, bits and top-k contexts exactly).
3. A shard that raises does not leave its rank behind: the error goes to rank 0 with the others, and rank 0 raises
   it, naming the rank and the shard, so the whole run fails with that rank's error. A rank that dies outright makes
   the collective fail on the others. Nothing is written by this module: the callers write their folders whole, on
   rank 0, after the pass, so a failed run leaves the folder as it was.

The result is returned on rank 0 (and to the main process under ``ddp_spawn``); other ranks get ``None``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from lstm_interp.analysis._index_files import Corpus
from lstm_interp.analysis.corpus_scan import CorpusScan, scan_corpus
from lstm_interp.analysis.corpus_shards import (
    DEFAULT_PRIME_CHARS,
    DEFAULT_SHARD_CHARS,
    CorpusShards,
    RankShards,
    ShardPlan,
    encode_corpus,
)
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import trace, trace_segments
from lstm_interp.tracing.trace import NamesFilter
from lstm_interp.tracing.trace_segments import DEFAULT_SEGMENT_CHARS

if TYPE_CHECKING:  # imported when a pass runs: Lightning takes seconds to import, which the explorer's start-up
    import lightning.pytorch as pl  # (it opens indexes, never builds them on this thread) should not pay

# The Trainer arguments a corpus pass takes by name (the CLI's flags are Lightning's own).
TRAINER_ARGUMENTS = ("accelerator", "devices", "num_nodes", "strategy")


class Accumulator(Protocol):
    """What a corpus pass folds the traces into."""

    def update(self, trace: Any, start: int) -> Any: ...

    def merge(self, other: Any) -> Any: ...


class CorpusPassError(RuntimeError):
    """A rank of a corpus pass failed; the message names the rank, the shard and the error."""


def pass_trainer(trainer: pl.Trainer | None = None, trainer_kwargs: Mapping[str, Any] | None = None) -> pl.Trainer:
    """The Trainer a corpus pass runs on: the one given, or one built from ``trainer_kwargs`` (Lightning's own
    arguments: ``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``enable_progress_bar``, ...), with
    no logger, checkpointing or model summary, which a prediction pass has no use for, and no progress bar unless
    ``enable_progress_bar=True``.

    Raises:
        ValueError: both a Trainer and arguments, or arguments the Trainer refuses (Lightning's message).
        TypeError: ``trainer`` is not a Trainer.
    """
    import lightning.pytorch as pl

    if trainer is not None:
        if trainer_kwargs:
            raise ValueError(f"give a `trainer` or its arguments, not both (got {sorted(trainer_kwargs)})")
        if not isinstance(trainer, pl.Trainer):
            raise TypeError(f"`trainer` must be a lightning.pytorch.Trainer, got {type(trainer).__name__}")
        return trainer
    # A library call is quiet unless asked (the CLI turns Lightning's progress bar on, one bar on rank 0).
    settings = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False,
                "enable_progress_bar": False}  # fmt: skip
    return pl.Trainer(**(settings | dict(trainer_kwargs or {})))


def check_launcher(trainer: pl.Trainer) -> None:
    """Refuse a strategy that spawns or forks its processes (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``): the
    merged result lives in rank 0's process, and Lightning cannot return a prediction from there to the caller.

    Raises:
        ValueError: naming the strategy and what to use instead.
    """
    launcher = getattr(trainer.strategy, "launcher", None)
    if launcher is not None and type(launcher).__name__ == "_MultiProcessingLauncher":
        raise ValueError(
            f"a corpus pass cannot run on {type(trainer.strategy).__name__} with processes started by spawn or fork "
            f"({getattr(launcher, '_start_method', '?')}): Lightning returns no result from them. Use "
            "strategy='ddp' (Lightning starts the other ranks by running your script again), or launch the ranks "
            "with torchrun or srun"
        )


def _pass_module() -> type:
    """The LightningModule class of a pass, defined on first use: importing this module imports no Lightning."""
    global _PASS_MODULE
    if _PASS_MODULE is not None:
        return _PASS_MODULE
    import lightning.pytorch as pl

    class _CorpusPass(pl.LightningModule):
        """The pass as a LightningModule: ``predict_step`` traces one shard into this rank's accumulator."""

        def __init__(
            self,
            model: CharLSTM,
            ids: np.ndarray,
            plan: ShardPlan,
            new_accumulator: Callable[[], Accumulator],
            names_filter: NamesFilter,
            segment_chars: int,
            progress: Callable[[int, int], None] | None = None,
        ) -> None:
            super().__init__()
            self.model = model
            self.ids, self.plan, self.names_filter, self.segment_chars = ids, plan, names_filter, segment_chars
            self.progress = progress
            self.done = 0
            self.new_accumulator = new_accumulator
            self.accumulator: Accumulator | None = None
            self.failure: str | None = None
            self.steps = 0

        def predict_dataloader(self) -> DataLoader:
            sampler = RankShards(self.plan, self.trainer.world_size, self.trainer.global_rank)
            self.steps = len(sampler)
            return DataLoader(CorpusShards(self.ids, self.plan), batch_size=None, sampler=sampler)

        def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
            k = int(batch["index"])
            if k >= 0 and self.failure is None:
                try:
                    self._trace_shard(batch)
                except Exception as err:  # sent to rank 0, which raises it for the whole run
                    lo, hi = self.plan.bounds(k)[1:]
                    self.failure = (f"shard {k} (characters {lo:,}-{hi:,}): {type(err).__name__}: {err}\n"
                                    f"{traceback.format_exc(limit=4)}")  # fmt: skip
            if batch_idx == self.steps - 1:
                return self._gather()
            return k  # not None: Lightning warns about a predict_step that returns nothing

        def _trace_shard(self, batch: dict[str, Any]) -> None:
            state = None
            if len(batch["prime"]):
                state = trace(self.model, batch["prime"], names_filter="layers.0.hidden").final_state
            if self.accumulator is None:
                self.accumulator = self.new_accumulator()
            if hasattr(self.accumulator, "context"):  # features that look back see the warm-up characters too
                self.accumulator.context(batch["prime"])
            segments = trace_segments(self.model, batch["ids"], self.segment_chars, names_filter=self.names_filter,
                                      state=state)  # fmt: skip
            for start, segment in segments:
                self.accumulator.update(segment, int(batch["start"]) + start)
                self.done += segment.num_steps
                if self.progress is not None and self.trainer.global_rank == 0:
                    block = self.plan.rank_block(0, self.trainer.world_size)
                    total = sum(self.plan.bounds(k)[2] - self.plan.bounds(k)[1] for k in block)
                    self.progress(self.done, total)

        def _gather(self) -> Any:
            mine = (self.accumulator, self.failure)
            world, rank = self.trainer.world_size, self.trainer.global_rank
            if world > 1:
                gathered: list[Any] | None = [None] * world if rank == 0 else None
                try:
                    torch.distributed.gather_object(mine, gathered, dst=0)
                except RuntimeError as err:  # a rank that died outright (killed, out of memory) leaves no error to send
                    raise CorpusPassError(
                        f"rank {rank} of {world} could not collect the other ranks' results: one of them died during "
                        f"the pass ({type(err).__name__}: {str(err)[:300]})"
                    ) from err
            else:
                gathered = [mine]
            if rank != 0:
                if self.failure is not None:
                    raise CorpusPassError(f"rank {rank} failed on {self.failure}")
                return None
            assert gathered is not None
            failed = [(r, failure) for r, (_, failure) in enumerate(gathered) if failure is not None]
            if failed:
                r, failure = failed[0]
                raise CorpusPassError(f"rank {r} of {world} failed on {failure}")
            parts = [acc for acc, _ in gathered if acc is not None]
            merged = parts[0]
            for part in parts[1:]:
                merged = merged.merge(part)
            return merged

    _PASS_MODULE = _CorpusPass
    return _CorpusPass


_PASS_MODULE: type | None = None


def corpus_pass(
    model: CharLSTM,
    corpus: Corpus | CorpusScan,
    new_accumulator: Callable[[], Accumulator],
    *,
    names_filter: NamesFilter = None,
    shard_chars: int = DEFAULT_SHARD_CHARS,
    prime_chars: int = DEFAULT_PRIME_CHARS,
    segment_chars: int = DEFAULT_SEGMENT_CHARS,
    on_unknown: str = "error",
    progress: Callable[[int, int], None] | None = None,
    trainer: pl.Trainer | None = None,
    **trainer_kwargs: Any,
) -> Any:
    """Fold ``model``'s trace of ``corpus`` into accumulators, shard by shard, on Lightning's engine.

    Args:
        model: the network.
        corpus: the text, a file or a list of files (UTF-8, end to end), or a :class:`CorpusScan` of one.
        new_accumulator: makes an empty accumulator (``update(trace, start)``, ``merge(other)``); it must be
            picklable (a class or a ``functools.partial``) under ``ddp_spawn``.
        names_filter: the trace names the accumulator reads.
        shard_chars, prime_chars: the shards (:class:`~.corpus_shards.ShardPlan`): results depend on them, never on
            the number of processes.
        segment_chars: characters traced at a time within a shard (memory).
        on_unknown: ``"error"`` or ``"skip"`` for characters outside the vocabulary.
        progress: called on rank 0 after each traced segment with (characters traced, characters in all) of rank
            0's shards (the live explorer's "indexing, n%").
        trainer: the Trainer to run on; or its arguments as keywords (``accelerator="gpu", devices=8,
            num_nodes=4, strategy="ddp"``).

    Returns:
        The merged accumulator on rank 0 (and in the main process under ``ddp_spawn``); ``None`` on other ranks.

    Raises:
        CorpusPassError: a rank failed (its rank, shard and error).
        ValueError, VocabularyError, FileNotFoundError: bad input, before the pass (:func:`scan_corpus`).
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    if isinstance(segment_chars, bool) or not isinstance(segment_chars, int) or segment_chars < 1:
        raise ValueError(f"`segment_chars` must be a positive integer, got {segment_chars!r}")
    runner = pass_trainer(trainer, trainer_kwargs)
    check_launcher(runner)
    scan = corpus if isinstance(corpus, CorpusScan) else scan_corpus(model, corpus, on_unknown=on_unknown)
    plan = ShardPlan(scan.length, shard_chars, prime_chars)
    ids = encode_corpus(model._require_vocab(), scan)
    was_training = model.training
    module = _pass_module()(model.eval(), ids, plan, new_accumulator, names_filter, segment_chars, progress)
    try:
        outputs = runner.predict(module, return_predictions=True)
    finally:
        model.train(was_training)
    if not outputs or runner.global_rank != 0:
        return None
    return outputs[-1]  # the last step's: the merged accumulator
