"""The Lightning data module: a text source in, train/val/test dataloaders of character ids out."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from lstm_interp.data.corpus import BUNDLED_CORPORA, EncodedCorpus, check_one_source, validate_split
from lstm_interp.data.stream_batches import StreamBatches
from lstm_interp.data.window_dataset import WindowDataset, check_sizes
from lstm_interp.vocab import CharVocab, OnUnknown


def check_file_hashes(files: Any, sha256: str | list[str]) -> None:
    """Check that each of ``files`` exists and has the expected sha256 (a digest, or a list in file order)."""
    if files is None:
        raise ValueError(f"`sha256` ({sha256!r}) checks `files`, but the corpus is not given as files")
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    digests = [sha256] if isinstance(sha256, str) else list(sha256)
    if len(digests) != len(paths):
        raise ValueError(f"`sha256` must give one digest per file: {len(paths)} file(s), got {len(digests)}")
    for path, expected in zip(paths, digests, strict=True):
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
            raise ValueError(f"`sha256` must be 64 hexadecimal digits, got {expected!r} for {os.fspath(path)!r}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"corpus file {os.fspath(path)!r} does not exist (expected sha256 {expected})")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected.lower():
            raise ValueError(
                f"corpus file {os.fspath(path)!r} has sha256 {digest.hexdigest()}, expected {expected.lower()}: it is "
                "not the file this run was set up for (changed, truncated or another version)"
            )


class CharDataModule(pl.LightningDataModule):
    """Character-level data for language models, from a string, text files, a Hugging Face dataset or a bundled book.

    :meth:`prepare_data` encodes the source once into a memory-mapped cache (see :class:`EncodedCorpus`);
    :meth:`setup` opens it and cuts it into contiguous train/val/test parts. Two batch formats:

    - ``stateful=False`` (default): ``(x, y)``, ``torch.long`` of shape ``(batch_size, seq_len)``, from
      non-overlapping windows (:class:`WindowDataset`); training shuffles them and drops the last partial batch.
    - ``stateful=True``: ``(x, y, reset)`` from :class:`StreamBatches`, rows continuing from batch to batch for
      truncated backpropagation through time; ``reset`` is ``True`` on the first batch of every pass. Under DDP
      each rank reads its own ``batch_size`` streams out of ``batch_size * world_size``.

    A split of fraction 0 gives no dataloader for it (Lightning then skips that loop).

    Args:
        text: the corpus as a Python string (not saved in the hyperparameters).
        files: a text file or a list of them, read in order as ``cat`` would; ``.gz``, ``.xz``, ``.bz2`` work too.
        dataset: a ``datasets.Dataset``/``DatasetDict``, or a name or local path for ``datasets.load_dataset``.
        corpus: the name of a bundled corpus, one of :data:`BUNDLED_CORPORA` (``"war_and_peace"``).
        vocab: a fixed vocabulary (a :class:`CharVocab` or its characters); by default the corpus's characters.
        on_unknown: with a fixed ``vocab``, ``"error"``, ``"skip"`` or ``"replace"`` characters it lacks.
        replacement: the vocabulary character used for unknown ones with ``on_unknown="replace"``.
        text_column: the dataset column holding the text.
        dataset_config: the configuration name passed to ``datasets.load_dataset``.
        dataset_split: the dataset split to read.
        split: fractions of the corpus for train, validation and test, in that order.
        batch_size: sequences per batch.
        seq_len: steps per sequence (truncated BPTT length in stateful mode), at least 2.
        stateful: give batches of continuing streams instead of shuffled windows.
        cache_dir: where encoded corpora are kept; default ``$LSTM_INTERP_CACHE`` or ``~/.cache/lstm_interp``.
        num_workers: DataLoader worker processes.
        sha256: the expected sha256 of each of ``files`` (one hex digest, or a list in the order of ``files``);
            checked at construction, so a missing or changed corpus stops a run before any training.

    Raises:
        ValueError: for no source or several, an unknown bundled corpus, a non-positive ``batch_size``, a
            ``seq_len`` below 2, split fractions that are negative, do not sum to 1 or give train nothing, an
            unknown ``on_unknown`` or a negative ``num_workers``, or ``sha256`` without ``files`` or with a count
            that differs from theirs, or a file whose sha256 is not the one given (naming the file and both hashes);
            in :meth:`setup`, for a train part too short for one batch.
        FileNotFoundError: with ``sha256``, for a file in ``files`` that does not exist.

    Example::

        >>> data = CharDataModule(corpus="war_and_peace", batch_size=32, seq_len=100)
        >>> model = MyCharModel(vocab=data.vocab)
        >>> trainer = Trainer(max_epochs=1)
        >>> trainer.fit(model, datamodule=data)
    """

    def __init__(
        self,
        text: str | None = None,
        files: str | list[str] | None = None,
        dataset: Any = None,
        corpus: str | None = None,
        *,
        vocab: CharVocab | str | None = None,
        on_unknown: OnUnknown = "error",
        replacement: str | None = None,
        text_column: str = "text",
        dataset_config: str | None = None,
        dataset_split: str = "train",
        split: tuple[float, float, float] = (0.9, 0.05, 0.05),
        batch_size: int = 64,
        seq_len: int = 100,
        stateful: bool = False,
        cache_dir: str | None = None,
        num_workers: int = 0,
        sha256: str | list[str] | None = None,
    ) -> None:
        super().__init__()
        check_one_source(text=text, files=files, dataset=dataset, corpus=corpus)
        if sha256 is not None:
            check_file_hashes(files, sha256)
        if corpus is not None and corpus not in BUNDLED_CORPORA:
            raise ValueError(f"unknown bundled corpus {corpus!r}; the bundled corpora are {sorted(BUNDLED_CORPORA)}")
        check_sizes(batch_size=batch_size, seq_len=seq_len)
        if len(split) != 3:
            raise ValueError(f"`split` must be three fractions (train, val, test), got {split!r}")
        self.split = validate_split(split)
        if on_unknown not in ("error", "skip", "replace"):
            raise ValueError(f"`on_unknown` must be 'error', 'skip' or 'replace', got {on_unknown!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"`num_workers` must be a non-negative integer, got {num_workers!r}")

        # Only JSON-able values go into the hyperparameters (and the checkpoint): a text may be a whole book and
        # a dataset object cannot be written; a vocabulary object is kept as its characters.
        ignore = ["text"]
        if dataset is not None and not isinstance(dataset, str):
            ignore.append("dataset")
        if vocab is None or isinstance(vocab, CharVocab):
            # None is left out rather than saved: Lightning merges these hparams with the model's, where `vocab`
            # holds the characters worked out from this very corpus, and refuses keys whose values differ.
            ignore.append("vocab")
        self.save_hyperparameters(ignore=ignore)
        if isinstance(vocab, CharVocab):
            self.hparams["vocab"] = vocab.chars
        # Paths become strings so that checkpoints stay loadable with `torch.load(..., weights_only=True)`.
        for key in ("cache_dir", "files"):
            value = self.hparams.get(key)
            if isinstance(value, os.PathLike):
                self.hparams[key] = os.fspath(value)
            elif isinstance(value, (list, tuple)):
                self.hparams[key] = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]

        self._sources = {"text": text, "files": files, "dataset": dataset, "corpus": corpus}
        self._options: dict[str, Any] = {
            "vocab": vocab,
            "on_unknown": on_unknown,
            "replacement": replacement,
            "text_column": text_column,
            "dataset_config": dataset_config,
            "dataset_split": dataset_split,
            "cache_dir": cache_dir,
        }
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.stateful = stateful
        self.num_workers = num_workers
        self._corpus: EncodedCorpus | None = None
        self.train_data: WindowDataset | StreamBatches | None = None
        self.val_data: WindowDataset | StreamBatches | None = None
        self.test_data: WindowDataset | StreamBatches | None = None
        self._is_set_up = False

    # ------------------------------------------------------------------------------------------ the corpus
    def _prepare(self) -> EncodedCorpus:
        return EncodedCorpus.prepare(**self._sources, **self._options)

    def prepare_data(self) -> None:
        """Encode the source into the cache unless it is there (Lightning calls this on one process per node)."""
        self._prepare()

    @property
    def corpus(self) -> EncodedCorpus:
        """The encoded corpus; prepared (or loaded from the cache) on first use."""
        if self._corpus is None:
            self._corpus = self._prepare()
        return self._corpus

    @property
    def vocab(self) -> CharVocab:
        """The vocabulary; available right after construction (it prepares the corpus if need be)."""
        return self.corpus.vocab

    @property
    def vocab_size(self) -> int:
        """The number of characters in the vocabulary."""
        return len(self.vocab)

    # ------------------------------------------------------------------------------------------ datasets
    def setup(self, stage: str | None = None) -> None:
        """Open the cached corpus and build the train/val/test datasets (views of the memory map, not copies).

        Raises:
            ValueError: if the train part is shorter than one batch needs.
        """
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        parts = self.corpus.split(self.split)
        # Stateful mode needs `seq_len + 1` ids in each of `batch_size * world_size` streams; window mode asks the
        # same, so that switching modes never turns a corpus that worked into one too short.
        needed = self.batch_size * world_size * (self.seq_len + 1)
        if len(parts[0]) < needed:
            processes = f" * world_size ({world_size})" if world_size > 1 else ""
            raise ValueError(
                f"the train part of the corpus has {len(parts[0])} characters ({self.split[0]:g} of "
                f"{len(self.corpus)}), but one batch needs batch_size ({self.batch_size}){processes} * (seq_len + 1) "
                f"({self.seq_len + 1}) = {needed}; use a longer corpus or a smaller batch_size/seq_len"
            )
        datasets = []
        for name, fraction, ids in zip(("train", "val", "test"), self.split, parts, strict=True):
            if fraction == 0:
                datasets.append(None)
                continue
            if self.stateful:
                data = StreamBatches(ids, self.batch_size, self.seq_len, rank=rank, world_size=world_size)
            else:
                data = WindowDataset(ids, self.seq_len)
            if len(data) == 0:
                rank_zero_warn(
                    f"the {name} part of the corpus ({len(ids)} characters) is too short for one "
                    f"{'batch' if self.stateful else 'window'} of seq_len={self.seq_len}; there will be no {name} data"
                )
                data = None
            datasets.append(data)
        self.train_data, self.val_data, self.test_data = datasets
        self._is_set_up = True

    def _loader(self, data: WindowDataset | StreamBatches | None, *, train: bool) -> DataLoader | list[DataLoader]:
        if not self._is_set_up:
            raise RuntimeError("call `setup()` before asking for a dataloader (a Trainer does this itself)")
        if data is None:
            return []  # an empty list tells Lightning there is nothing to run
        options: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": self.num_workers > 0,
        }
        if isinstance(data, StreamBatches):  # the dataset yields whole batches
            if train:
                return _ResumableStreamLoader(data, self._completed_train_batches, **options)
            return DataLoader(data, batch_size=None, **options)
        return DataLoader(data, batch_size=self.batch_size, shuffle=train, drop_last=train, **options)

    def _completed_train_batches(self) -> int:
        """Training batches of the current epoch already done: 0 on a fresh epoch, more when a fit resumes mid-epoch."""
        trainer = self.trainer
        if trainer is None or not getattr(trainer, "training", False) or not hasattr(trainer, "fit_loop"):
            return 0  # outside a fit (or a stand-in trainer that only names rank and world size)
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def train_dataloader(self) -> DataLoader | list[DataLoader]:
        """Shuffled windows (or streams in order, in stateful mode)."""
        return self._loader(self.train_data, train=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Validation batches in corpus order; an empty list when ``split`` gives validation nothing."""
        return self._loader(self.val_data, train=False)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Test batches in corpus order; an empty list when ``split`` gives testing nothing."""
        return self._loader(self.test_data, train=False)

    def __repr__(self) -> str:
        source = next(f"{name}={value!r}" for name, value in self._sources.items() if value is not None)
        source = source if len(source) <= 60 else source[:57] + "..."
        return (
            f"CharDataModule({source}, batch_size={self.batch_size}, seq_len={self.seq_len}, stateful={self.stateful})"
        )


class _ResumableStreamLoader(DataLoader):
    """The training loader of stateful streams: a fit resumed mid-epoch carries on with the next batch.

    Lightning restores its loop counters from the checkpoint before it iterates the loader, so each pass starts after
    the batches of the epoch that the trainer has already completed (0 on a fresh epoch). Those batches are cheap
    slices of the memory map, so they are skipped by reading past them. The ``state_dict`` hooks make Lightning treat
    the loader as resumable (they hold nothing: the position comes from the trainer).
    """

    def __init__(self, data: StreamBatches, completed: Callable[[], int], **options: Any) -> None:
        super().__init__(data, batch_size=None, **options)
        self._completed = completed

    def __iter__(self) -> Iterator[Any]:
        skip = self._completed()
        for index, batch in enumerate(super().__iter__()):
            if index >= skip:
                yield batch

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass
