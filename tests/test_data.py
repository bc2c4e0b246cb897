"""Tests for lstm_interp/data: EncodedCorpus, WindowDataset, StreamBatches and CharDataModule."""

from __future__ import annotations

import bz2
import gzip
import itertools
import lzma
import pickle
import types

import datasets
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lstm_interp.data import BUNDLED_CORPORA, CharDataModule, EncodedCorpus, StreamBatches, WindowDataset
from lstm_interp.data import corpus as corpus_module
from lstm_interp.vocab import CharVocab, VocabularyError

WORDS = ["the", "cat", "sat", "on", "mat", "naïve", "café", '"quoted"', "a", "dog", "ran", "far"]


def make_text(n_words: int = 2000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, size=n_words)
    breaks = rng.random(n_words) < 0.1
    return "".join(w + ("\n" if b else " ") for w, b in zip(words, breaks, strict=True))


@pytest.fixture
def text() -> str:
    return make_text()


# ---------------------------------------------------------------------------------------------- EncodedCorpus
def test_text_source_encodes_every_character(tmp_path, text):
    corpus = EncodedCorpus.prepare(text=text, cache_dir=tmp_path)
    assert len(corpus) == len(text)
    assert corpus.vocab == CharVocab.from_text(text)
    assert corpus.ids.dtype == np.uint8 and isinstance(corpus.ids, np.memmap)
    assert not corpus.ids.flags.writeable
    assert corpus.text() == text
    assert corpus.path.parent == tmp_path and corpus.path.suffix == ".bin"


def test_files_are_concatenated_like_cat_and_decompressed(tmp_path, text):
    parts = [text[:1000], text[1000:3000], text[3000:5000], text[5000:]]
    plain = tmp_path / "a.txt"
    plain.write_text(parts[0], encoding="utf-8")
    for part, opener, name in zip(parts[1:], (gzip.open, lzma.open, bz2.open), ("b.gz", "c.xz", "d.bz2"), strict=True):
        with opener(tmp_path / name, "wb") as handle:
            handle.write(part.encode("utf-8"))
    names = [str(tmp_path / n) for n in ("a.txt", "b.gz", "c.xz", "d.bz2")]
    corpus = EncodedCorpus.prepare(files=names, cache_dir=tmp_path / "cache")
    assert corpus.text() == text
    assert EncodedCorpus.prepare(files=str(plain), cache_dir=tmp_path / "cache").text() == parts[0]


def test_small_chunks_give_the_same_ids(tmp_path, text, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    whole = np.array(EncodedCorpus.prepare(files=str(path), cache_dir=tmp_path / "c1").ids)
    monkeypatch.setattr(corpus_module, "CHUNK_SIZE", 7)  # multi-byte characters now straddle reads
    assert np.array_equal(EncodedCorpus.prepare(files=str(path), cache_dir=tmp_path / "c2").ids, whole)
    assert np.array_equal(EncodedCorpus.prepare(text=text, cache_dir=tmp_path / "c3").ids, whole)


def test_cache_is_reused_and_not_rewritten(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    first = EncodedCorpus.prepare(files=str(path), cache_dir=tmp_path / "cache")
    meta = first.path.with_suffix(".json")
    stamps = (first.path.stat().st_mtime_ns, meta.stat().st_mtime_ns)
    second = EncodedCorpus.prepare(files=[str(path)], cache_dir=tmp_path / "cache")
    assert second.path == first.path
    assert (second.path.stat().st_mtime_ns, meta.stat().st_mtime_ns) == stamps
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".bin", ".json"]  # no temporary files left
    # A changed file, or another vocabulary, is another entry.
    path.write_text(text + "zzz", encoding="utf-8")
    changed = EncodedCorpus.prepare(files=str(path), cache_dir=tmp_path / "cache")
    assert changed.path != first.path and changed.text().endswith("zzz")
    other = EncodedCorpus.prepare(text=text, vocab=first.vocab.chars + "#", cache_dir=tmp_path / "cache")
    assert len(other.vocab) == len(first.vocab) + 1


def test_damaged_cache_entry_is_rebuilt(tmp_path, text):
    corpus = EncodedCorpus.prepare(text=text, cache_dir=tmp_path)
    corpus.path.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"\.bin' is missing or not \d+ bytes long"):
        EncodedCorpus(corpus.path)
    assert EncodedCorpus.prepare(text=text, cache_dir=tmp_path).text() == text


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_INTERP_CACHE", str(tmp_path / "mine"))
    assert corpus_module.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LSTM_INTERP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus_module.default_cache_dir() == tmp_path / "xdg" / "lstm_interp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert corpus_module.default_cache_dir().parts[-2:] == (".cache", "lstm_interp")


def test_invalid_utf8_names_the_file_and_byte_offset(tmp_path, monkeypatch):
    path = tmp_path / "bad.txt"
    # "é" is two bytes; with 7-byte reads some of them straddle two reads before the bad byte at offset 3000.
    path.write_bytes(("é" * 1000 + "a" * 1000).encode("utf-8") + b"\xff" + b"tail")
    monkeypatch.setattr(corpus_module, "CHUNK_SIZE", 7)
    with pytest.raises(ValueError, match=r"bad\.txt.*not valid UTF-8: byte 0xff at byte offset 3000"):
        EncodedCorpus.prepare(files=str(path), cache_dir=tmp_path)
    truncated = tmp_path / "truncated.txt"
    truncated.write_bytes(b"abcd" + "é".encode()[:1])  # a character cut off at the end of the file
    with pytest.raises(ValueError, match=r"truncated\.txt.*byte 0xc3 at byte offset 4"):
        EncodedCorpus.prepare(files=str(truncated), cache_dir=tmp_path)
    packed = tmp_path / "bad.gz"
    with gzip.open(packed, "wb") as handle:
        handle.write(b"ok\n\xfe")
    with pytest.raises(ValueError, match=r"bad\.gz.*byte offset 3 of the decompressed data"):
        EncodedCorpus.prepare(files=str(packed), cache_dir=tmp_path)


def test_given_vocab_lists_unknown_characters_at_absolute_positions(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "CHUNK_SIZE", 10)
    text = "ab" * 20 + "X" + "ab" * 10 + "Y" + "X"
    with pytest.raises(VocabularyError, match=r"2 character\(s\).*'X' \(first at 40\), 'Y' \(first at 61\)"):
        EncodedCorpus.prepare(text=text, vocab="ab", cache_dir=tmp_path)
    skipped = EncodedCorpus.prepare(text=text, vocab="ab", on_unknown="skip", cache_dir=tmp_path)
    assert skipped.text() == "ab" * 30 and skipped.vocab.chars == "ab"
    replaced = EncodedCorpus.prepare(
        text=text, vocab=CharVocab("ab?"), on_unknown="replace", replacement="?", cache_dir=tmp_path
    )
    assert replaced.text() == text.replace("X", "?").replace("Y", "?")


def test_bundled_corpus(tmp_path):
    corpus = EncodedCorpus.prepare(corpus="war_and_peace", cache_dir=tmp_path)
    assert BUNDLED_CORPORA["war_and_peace"].endswith("war_and_peace.txt.xz")
    assert len(corpus) > 3_000_000 and "Natasha" in corpus.text(0, 2_000_000)
    with pytest.raises(ValueError, match=r"unknown bundled corpus 'anna'.*\['war_and_peace'\]"):
        EncodedCorpus.prepare(corpus="anna", cache_dir=tmp_path)


@pytest.fixture
def text_dataset(tmp_path, text, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "train.txt").write_text(text, encoding="utf-8")
    return datasets, folder


def test_dataset_sources(tmp_path, text, text_dataset, monkeypatch):
    datasets, folder = text_dataset
    monkeypatch.setattr(corpus_module, "_DATASET_BATCH_ROWS", 16)  # several row batches, joined like the rows
    expected = text.rstrip("\n")  # the `text` loader drops line ends; rows are joined back with "\n"
    loaded = datasets.load_dataset("text", data_files=str(folder / "train.txt"), cache_dir=str(tmp_path / "hf"))
    from_dict = EncodedCorpus.prepare(dataset=loaded, cache_dir=tmp_path / "cache")
    assert from_dict.text() == expected
    from_split = EncodedCorpus.prepare(dataset=loaded["train"], cache_dir=tmp_path / "cache")
    assert from_split.path == from_dict.path  # same fingerprint, column and split: same cache entry
    from_folder = EncodedCorpus.prepare(dataset=str(folder), cache_dir=tmp_path / "cache")
    assert from_folder.text() == expected
    with pytest.raises(ValueError, match=r"no column 'body'; its columns are \['text'\]"):
        EncodedCorpus.prepare(dataset=loaded, text_column="body", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"no split 'validation'; its splits are \['train'\]"):
        EncodedCorpus.prepare(dataset=loaded, dataset_split="validation", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("sources", "match"),
    [({}, "got none"), ({"text": "ab", "corpus": "war_and_peace"}, "got `text` and `corpus`")],
)
def test_exactly_one_source(tmp_path, sources, match):
    with pytest.raises(ValueError, match=f"give exactly one of `text`, `files`, `dataset`, `corpus`; {match}"):
        EncodedCorpus.prepare(**sources, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=match):
        CharDataModule(**sources)


def test_empty_and_missing_sources(tmp_path):
    with pytest.raises(ValueError, match="the corpus is empty"):
        EncodedCorpus.prepare(text="", cache_dir=tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"the corpus is empty: files empty\.txt"):
        EncodedCorpus.prepare(files=str(tmp_path / "empty.txt"), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"corpus file '.*nowhere\.txt' does not exist"):
        EncodedCorpus.prepare(files=[str(tmp_path / "empty.txt"), str(tmp_path / "nowhere.txt")], cache_dir=tmp_path)


def test_split_is_contiguous(tmp_path, text):
    corpus = EncodedCorpus.prepare(text=text, cache_dir=tmp_path)
    parts = corpus.split((0.8, 0.15, 0.05))
    n = len(text)
    bounds = [0, int(0.8 * n), int((0.8 + 0.15) * n), n]
    assert [len(p) for p in parts] == [stop - start for start, stop in itertools.pairwise(bounds)]
    assert np.array_equal(np.concatenate(parts), corpus.ids)
    assert all(isinstance(p, np.memmap) for p in parts)  # views of the map, not copies
    assert [len(p) for p in corpus.split((1.0, 0.0))] == [len(text), 0]


@pytest.mark.parametrize(
    ("split", "match"),
    [
        ((0.9, -0.05, 0.15), r"non-negative numbers, got \(0.9, -0.05, 0.15\)"),
        ((0.0, 0.5, 0.5), r"positive train fraction.*got \(0.0, 0.5, 0.5\)"),
        ((0.9, 0.05, 0.1), r"must sum to 1, got \(0.9, 0.05, 0.1\)"),
    ],
)
def test_bad_split_fractions(tmp_path, split, match):
    with pytest.raises(ValueError, match=match):
        EncodedCorpus.prepare(text="abc", cache_dir=tmp_path).split(split)
    with pytest.raises(ValueError, match=match):
        CharDataModule(text="abc", split=split)


def test_corpus_pickles_by_path(tmp_path, text):
    corpus = EncodedCorpus.prepare(text=text, cache_dir=tmp_path)
    blob = pickle.dumps(corpus)
    assert len(blob) < 1000
    assert pickle.loads(blob).text() == text


# ---------------------------------------------------------------------------------------------- datasets
def test_window_dataset_items_and_pickling(tmp_path, text):
    corpus = EncodedCorpus.prepare(text=text, cache_dir=tmp_path)
    ids = corpus.split((0.5, 0.5))[1]
    data = WindowDataset(ids, seq_len=16)
    assert len(data) == (len(ids) - 1) // 16
    x, y = data[3]
    assert x.shape == y.shape == (16,) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[1:], y[:-1])
    assert x.tolist() == ids[48:64].tolist() and y[-1].item() == ids[64]
    assert torch.equal(data[-1][0], data[len(data) - 1][0])
    with pytest.raises(IndexError, match="out of range"):
        data[len(data)]
    blob = pickle.dumps(data)
    assert len(blob) < 1000  # the memmap slice travels as (file, offset, length), not as data
    again = pickle.loads(blob)
    assert all(torch.equal(a, b) for a, b in zip(again[5], data[5], strict=True))
    assert torch.equal(pickle.loads(pickle.dumps(WindowDataset(np.arange(10), 4)))[1][0], torch.arange(4, 8))


def test_stream_batches_continue_row_by_row():
    ids = np.arange(1000)
    batches = StreamBatches(ids, batch_size=4, seq_len=10)
    assert batches.stream_len == 250 and len(batches) == 24
    items = list(batches)
    assert len(items) == len(batches)
    assert [reset for _, _, reset in items] == [True] + [False] * 23
    for (x, y, _), (next_x, _, _) in itertools.pairwise(items):
        assert x.shape == y.shape == (4, 10) and x.dtype == torch.long
        assert torch.equal(y[:, :-1], x[:, 1:])
        assert torch.equal(next_x[:, 0], y[:, -1])  # row r picks up exactly where it stopped
    assert items[0][0][:, 0].tolist() == [0, 250, 500, 750]  # stream r starts at r * stream_len


def test_stream_batches_partition_streams_by_rank():
    ids = np.arange(2000)
    ranks = [StreamBatches(ids, batch_size=3, seq_len=8, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    seen = [{int(v) for x, y, _ in part for v in torch.cat([x, y], 1).flatten()} for part in ranks]
    assert not seen[0] & seen[1]
    assert list(ranks[1].rows) == [3, 4, 5]
    assert ranks[1].batch(0)[0][:, 0].tolist() == [3 * 333, 4 * 333, 5 * 333]
    with pytest.raises(ValueError, match=r"`rank` must be in \[0, 2\), got 2"):
        StreamBatches(ids, 3, 8, rank=2, world_size=2)


def test_stream_batches_keep_their_order_with_workers(tmp_path, text):
    corpus = EncodedCorpus.prepare(text=text, cache_dir=tmp_path)
    batches = StreamBatches(corpus.ids, batch_size=2, seq_len=16)
    single = [x for x, _, _ in DataLoader(batches, batch_size=None)]
    multi = list(DataLoader(batches, batch_size=None, num_workers=2))
    assert len(multi) == len(single)
    assert all(torch.equal(a, b[0]) for a, b in zip(single, multi, strict=True))
    assert [reset for _, _, reset in multi].count(True) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "`batch_size` must be a positive integer, got 0"),
        ({"batch_size": -3}, "`batch_size` must be a positive integer, got -3"),
        ({"seq_len": 1}, "`seq_len` must be an integer of at least 2, got 1"),
        ({"split": (0.5, 0.5)}, r"three fractions.*got \(0.5, 0.5\)"),
        ({"on_unknown": "drop"}, "got 'drop'"),
        ({"num_workers": -1}, "got -1"),
    ],
)
def test_datamodule_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CharDataModule(text="abc", **kwargs)


def test_datamodule_unknown_corpus_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"unknown bundled corpus 'tolstoy'.*\['war_and_peace'\]"):
        CharDataModule(corpus="tolstoy")


@pytest.mark.parametrize("stateful", [False, True])
def test_corpus_too_short_for_one_batch(tmp_path, stateful):
    data = CharDataModule(
        text="x" * 100, batch_size=4, seq_len=30, split=(1, 0, 0), stateful=stateful, cache_dir=tmp_path
    )
    with pytest.raises(ValueError, match=r"has 100 characters.*one batch needs .*= 124"):
        data.setup("fit")


def test_dataset_missing_text_column_through_the_datamodule(tmp_path, text_dataset):
    datasets, folder = text_dataset
    loaded = datasets.load_dataset("text", data_files=str(folder / "train.txt"), cache_dir=str(tmp_path / "hf"))
    data = CharDataModule(dataset=loaded, text_column="content", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"no column 'content'; its columns are \['text'\]"):
        data.prepare_data()


def test_datamodule_hyperparameters_vocab_and_empty_splits(tmp_path, text):
    vocab = CharVocab.from_text(text)
    data = CharDataModule(text=text, vocab=vocab, split=(0.9, 0.1, 0.0), batch_size=4, seq_len=8, cache_dir=tmp_path)
    assert "text" not in data.hparams and data.hparams["vocab"] == vocab.chars
    assert data.hparams["split"] == (0.9, 0.1, 0.0) and data.hparams["cache_dir"] == str(tmp_path)
    assert data.vocab == vocab and data.vocab_size == len(vocab)  # prepared lazily, before setup
    with pytest.raises(RuntimeError, match="call `setup"):
        data.train_dataloader()
    data.setup("fit")
    assert data.test_dataloader() == []  # a zero fraction: nothing to test
    loader = data.train_dataloader()
    assert loader.drop_last and loader.pin_memory == torch.cuda.is_available() and not loader.persistent_workers
    assert data.val_dataloader().batch_size == 4
    with_workers = CharDataModule(text=text, num_workers=1, batch_size=4, seq_len=8, cache_dir=tmp_path)
    with_workers.setup("fit")
    assert with_workers.train_dataloader().persistent_workers


def test_datamodule_reads_rank_and_world_size_from_the_trainer(tmp_path, text):
    rows = []
    for rank in range(2):
        data = CharDataModule(text=text, stateful=True, batch_size=2, seq_len=8, cache_dir=tmp_path)
        data.trainer = types.SimpleNamespace(global_rank=rank, world_size=2)  # what a DDP trainer would report
        data.setup("fit")
        batches = data.train_data
        assert (batches.rank, batches.world_size, batches.num_streams) == (rank, 2, 4)
        ids = torch.from_numpy(data.corpus.split(data.split)[0].astype(np.int64))
        streams = ids[: 4 * (len(ids) // 4)].reshape(4, -1)
        x, _, _ = next(iter(data.train_dataloader()))
        assert torch.equal(x, streams[2 * rank : 2 * rank + 2, :8])  # this rank's own streams
        rows.append(set(batches.rows))
    assert rows == [{0, 1}, {2, 3}]


# ---------------------------------------------------------------------------------------------- with a Trainer
class TinyCharModel(pl.LightningModule):
    """An embedding and a linear layer; it records the batches it sees."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, 8)
        self.out = torch.nn.Linear(8, vocab_size)
        self.train_batches: list[tuple] = []
        self.val_batches: list[tuple] = []

    def _loss(self, batch: tuple) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self.out(self.embed(x))  # (B, T, V)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        self.train_batches.append(batch)
        return self._loss(batch)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self.val_batches.append(batch)
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("stateful", [False, True])
def test_fit_with_a_real_trainer(tmp_path, text, stateful):
    data = CharDataModule(text=text, batch_size=4, seq_len=12, stateful=stateful, cache_dir=tmp_path / "cache")
    model = TinyCharModel(data.vocab_size)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=3,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=2,
    )
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 3
    assert len(model.train_batches) == 3 and len(model.val_batches) == 4  # sanity check, then validation after step 2
    assert trainer.num_training_batches == len(data.train_dataloader())
    ids = torch.from_numpy(data.corpus.split(data.split)[0].astype(np.int64))
    for batch in model.train_batches:
        x, y = batch[0], batch[1]
        assert x.shape == y.shape == (4, 12) and x.dtype == y.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])
    if not stateful:
        assert all(len(batch) == 2 for batch in model.train_batches)
        return
    streams = ids[: 4 * (len(ids) // 4)].reshape(4, -1)
    assert [batch[2] for batch in model.train_batches] == [True, False, False]
    for index, (x, _, _) in enumerate(model.train_batches):
        assert torch.equal(x, streams[:, index * 12 : index * 12 + 12])  # the ids at each stream's offset
    for (_, y, _), (next_x, _, _) in itertools.pairwise(model.train_batches):
        assert torch.equal(next_x[:, 0], y[:, -1])  # row r of batch i + 1 starts where row r of batch i ended
    assert [batch[2] for batch in model.val_batches] == [True, False, True, False]  # each pass starts afresh


def test_lightning_cli_parses_the_datamodule_arguments(tmp_path, text, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["lstm-interp"])  # pytest's own arguments are not for the CLI

    class VocabModel(TinyCharModel):
        def __init__(self, vocab: CharVocab | None = None) -> None:
            super().__init__(len(vocab) if vocab is not None else 1)
            self.vocab = vocab

    class LinkedCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")

    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    args = ["--data.files", str(path), "--data.split", "[0.8,0.1,0.1]", "--data.stateful", "true"]
    args += ["--data.batch_size", "4", "--data.cache_dir", str(tmp_path / "cache"), "--trainer.logger", "false"]
    cli = LinkedCLI(VocabModel, CharDataModule, run=False, args=args, save_config_callback=None)
    assert cli.datamodule.stateful and cli.datamodule.split == (0.8, 0.1, 0.1)
    assert cli.model.vocab == CharVocab.from_text(text)


def test_zero_validation_fraction_skips_validation(tmp_path, text):
    data = CharDataModule(text=text, split=(1.0, 0.0, 0.0), batch_size=4, seq_len=12, cache_dir=tmp_path / "cache")
    model = TinyCharModel(data.vocab_size)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2 and model.val_batches == []
    assert trainer.test(model, datamodule=data, verbose=False) == []
