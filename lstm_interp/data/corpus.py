"""The encoded corpus: every character of a text source turned into an id and stored once, memory-mapped.

A 1 GB corpus held as a Python string costs 1-4 GB and as a list of ids far more, so nothing here builds either.
Sources are read in chunks of about 8 MB, encoded with numpy and written straight into ``<key>.bin`` in a cache
folder; training reads windows from a read-only ``np.memmap`` of that file and the OS pages in what is used.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import itertools
import json
import lzma
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lstm_interp._io import atomic_path, atomic_write_text
from lstm_interp.vocab import CharVocab, OnUnknown, VocabularyError

BUNDLED_CORPORA: dict[str, str] = {
    "war_and_peace": str(Path(__file__).resolve().parent.parent / "assets" / "war_and_peace.txt.xz"),
}
# Bumped when the cache layout changes, so that old caches get a new key instead of being misread.
FORMAT_VERSION = 1
# Bytes read from a file, or characters sliced from a string, per chunk: large enough for numpy to be efficient.
CHUNK_SIZE = 8 * 2**20
_ENCODE_CHARS = 2**20
_DATASET_BATCH_ROWS = 1024
_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


class _Source(NamedTuple):
    description: str
    identity: dict[str, Any]  # what the cache key hashes: enough to notice any change of content
    chunks: Callable[[], Iterator[str]]  # a fresh pass over the text, in order


def default_cache_dir() -> Path:
    """``$LSTM_INTERP_CACHE``, else ``$XDG_CACHE_HOME/lstm_interp``, else ``~/.cache/lstm_interp``."""
    if os.environ.get("LSTM_INTERP_CACHE"):
        return Path(os.environ["LSTM_INTERP_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lstm_interp"


def check_one_source(**sources: Any) -> str:
    """Return the name of the one source that is not ``None``; raise ``ValueError`` if there are none or several."""
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        names = ", ".join(f"`{name}`" for name in sources)
        got = "none" if not given else " and ".join(f"`{name}`" for name in given)
        raise ValueError(f"give exactly one of {names}; got {got}")
    return given[0]


def validate_split(fractions: Sequence[float]) -> tuple[float, ...]:
    """Check split fractions (non-negative, the first, train, positive, summing to 1 within 1e-6) and return them."""
    values = tuple(float(f) for f in fractions)
    if not values or any(math.isnan(f) or f < 0 for f in values):
        raise ValueError(f"`split` fractions must be non-negative numbers, got {tuple(fractions)!r}")
    if values[0] <= 0:
        raise ValueError(f"`split` needs a positive train fraction (the first one), got {tuple(fractions)!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"`split` fractions must sum to 1, got {tuple(fractions)!r} (sum {sum(values):.8g})")
    return values


# ---------------------------------------------------------------------------------------------- sources
def _text_source(text: str) -> _Source:
    digest = hashlib.sha256()
    for start in range(0, len(text), CHUNK_SIZE):
        digest.update(text[start : start + CHUNK_SIZE].encode("utf-8", "surrogatepass"))
    return _Source(
        f"text ({len(text)} characters)",
        {"kind": "text", "sha256": digest.hexdigest(), "length": len(text)},
        lambda: (text[start : start + CHUNK_SIZE] for start in range(0, len(text), CHUNK_SIZE)),
    )


def _read_file(path: Path) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes read so far (of the decompressed stream for .gz/.xz/.bz2)
    with _OPENERS.get(path.suffix.lower(), open)(path, "rb") as handle:
        while True:
            try:
                data = handle.read(CHUNK_SIZE)
            except (OSError, EOFError, lzma.LZMAError) as err:
                raise ValueError(f"could not read corpus file {str(path)!r}: {err}") from err
            # The decoder may hold back the first bytes of a character split across reads; errors count from them.
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:
                where = offset - pending + err.start
                stream = " of the decompressed data" if path.suffix.lower() in _OPENERS else ""
                raise ValueError(
                    f"corpus file {str(path)!r} is not valid UTF-8: byte {err.object[err.start]:#04x} at byte offset "
                    f"{where}{stream} ({err.reason})"
                ) from err
            offset += len(data)
            if text:
                yield text
            if not data:
                return


def _files_source(files: str | os.PathLike | Sequence[str | os.PathLike], description: str | None = None) -> _Source:
    paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
    if not paths:
        raise ValueError("`files` is an empty list; give at least one text file")
    identity = []
    for path in paths:
        if path.is_dir():
            raise IsADirectoryError(
                f"corpus file {str(path)!r} is a folder, not a text file; give the text files in it as a list, e.g. "
                "files=['a.txt', 'b.txt'] (on the command line: --data.files '[a.txt, b.txt]')"
            )
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {str(path)!r} does not exist")
        stat = path.stat()
        identity.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])

    # Each file is decoded on its own, so an error can name it; for valid files this equals decoding `cat`.
    def chunks() -> Iterator[str]:
        for path in paths:
            yield from _read_file(path)

    shown = ", ".join(p.name for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return _Source(description or f"files {shown}", {"kind": "files", "files": identity}, chunks)


def _dataset_source(dataset: Any, text_column: str, config: str | None, split: str) -> _Source:
    import datasets  # here, not at the top: importing it takes about a second and most sources are files

    name = None
    if isinstance(dataset, (str, os.PathLike)):
        name = str(dataset)
        dataset = datasets.load_dataset(name, config, split=split)
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"dataset has no split {split!r}; its splits are {list(dataset)}")
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        kind = type(dataset).__name__
        raise TypeError(f"`dataset` must be a datasets.Dataset, a DatasetDict or a dataset name/path, got {kind}")
    if text_column not in dataset.column_names:
        columns = dataset.column_names
        raise ValueError(f"dataset has no column {text_column!r}; its columns are {columns} (see `text_column`)")
    rows = dataset.select_columns([text_column])

    # Rows are joined with "\n" because the `text` loader makes one row per line and strips the line end;
    # joining restores the file (all but a final newline) and keeps documents apart for other datasets.
    def chunks() -> Iterator[str]:
        for index, batch in enumerate(rows.iter(batch_size=_DATASET_BATCH_ROWS)):
            try:
                joined = "\n".join(batch[text_column])
            except TypeError as err:
                raise TypeError(f"dataset column {text_column!r} must hold strings: {err}") from err
            yield joined if index == 0 else "\n" + joined

    identity = {"kind": "dataset", "fingerprint": dataset._fingerprint, "column": text_column, "split": split}
    description = f"dataset {name or dataset.info.dataset_name or 'object'} [{split}] column {text_column!r}"
    return _Source(description, identity, chunks)


def _bundled_source(name: str) -> _Source:
    if name not in BUNDLED_CORPORA:
        raise ValueError(f"unknown bundled corpus {name!r}; the bundled corpora are {sorted(BUNDLED_CORPORA)}")
    return _files_source(BUNDLED_CORPORA[name], description=f"bundled corpus {name!r}")


# ---------------------------------------------------------------------------------------------- the corpus
class EncodedCorpus:
    """A corpus encoded as ids in a read-only memory-mapped array, built once per source in a cache folder.

    Build or reuse one with :meth:`prepare`; open an existing cache entry with the constructor. The cache holds
    ``<key>.bin`` (the ids, raw, in the vocabulary's smallest unsigned dtype) and ``<key>.json`` (vocabulary,
    length, dtype, source). ``key`` is the sha256 of the source's identity (file paths, sizes and mtimes; the
    hash of a text; a dataset's fingerprint, column and split) and of a given vocabulary. Both files are written
    atomically and the json last, so a json on disk means a complete entry.

    Args:
        path: the ``<key>.json`` or ``<key>.bin`` file of a cache entry.

    Raises:
        FileNotFoundError: if the entry's files are missing.
        ValueError: if they are malformed or disagree (a ``.bin`` of the wrong size).

    Example::

        >>> corpus = EncodedCorpus.prepare(text="hello world\\n" * 100, cache_dir=tmp_path)
        >>> len(corpus), len(corpus.vocab)
        (1200, 9)
        >>> corpus.vocab.decode(corpus.ids[:5])
        'hello'
        >>> [len(part) for part in corpus.split((0.9, 0.1))]
        [1080, 120]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self._meta_path = path.with_suffix(".json")
        self._bin_path = path.with_suffix(".bin")
        self._meta = meta = self._read_meta(self._meta_path)
        self._vocab = CharVocab(meta["vocab"])
        dtype = np.dtype(meta["dtype"])
        expected = meta["length"] * dtype.itemsize
        if not self._bin_path.is_file() or self._bin_path.stat().st_size != expected:
            raise ValueError(f"corpus cache {str(self._bin_path)!r} is missing or not {expected} bytes long")
        self._ids = np.memmap(self._bin_path, dtype=dtype, mode="r", shape=(meta["length"],))

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise FileNotFoundError(f"corpus cache metadata {str(path)!r} does not exist")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            if meta["format_version"] != FORMAT_VERSION:
                raise ValueError(f"format_version {meta['format_version']!r}, expected {FORMAT_VERSION}")
            meta["length"], meta["dtype"], meta["vocab"] = int(meta["length"]), str(meta["dtype"]), list(meta["vocab"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"corpus cache metadata {str(path)!r} is malformed: {err}") from err
        return meta

    @classmethod
    def prepare(
        cls,
        text: str | None = None,
        files: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        dataset: Any = None,
        corpus: str | None = None,
        *,
        vocab: CharVocab | str | None = None,
        on_unknown: OnUnknown = "error",
        replacement: str | None = None,
        text_column: str = "text",
        dataset_config: str | None = None,
        dataset_split: str = "train",
        cache_dir: str | os.PathLike | None = None,
    ) -> EncodedCorpus:
        """Encode a source into the cache, or reuse the entry already there; give exactly one source.

        Args:
            text: the corpus as a Python string.
            files: one or more UTF-8 text files, read in order as ``cat`` would; ``.gz``, ``.xz`` and ``.bz2``
                files are decompressed on the fly.
            dataset: a ``datasets.Dataset`` or ``DatasetDict``, or a name/path for
                ``datasets.load_dataset(dataset, dataset_config, split=dataset_split)``; rows of ``text_column``
                are joined with ``"\\n"``.
            corpus: the name of a corpus shipped with the package, a key of :data:`BUNDLED_CORPORA`.
            vocab: the vocabulary to encode with (a :class:`CharVocab` or its characters as a string); by default
                the corpus's own characters, sorted by code point.
            on_unknown: with a given ``vocab``, what to do with characters it lacks: ``"error"``, ``"skip"``
                or ``"replace"`` (by ``replacement``).
            replacement: the vocabulary character that stands for unknown ones when ``on_unknown="replace"``.
            text_column: the dataset column holding the text.
            dataset_config: the dataset configuration name, when ``dataset`` is a name.
            dataset_split: the dataset split to read (also picks from a ``DatasetDict``).
            cache_dir: the cache folder; by default :func:`default_cache_dir`.

        Raises:
            ValueError: for no source or several, an unknown bundled corpus, a missing dataset column, a file that
                is not valid UTF-8 (the message gives the byte offset) or an empty corpus.
            FileNotFoundError: for a missing file.
            VocabularyError: if the text holds characters ``vocab`` lacks and ``on_unknown="error"``; the message
                lists them with their first positions in the corpus.
        """
        kind = check_one_source(text=text, files=files, dataset=dataset, corpus=corpus)
        source = {
            "text": lambda: _text_source(text),  # type: ignore[arg-type]
            "files": lambda: _files_source(files),  # type: ignore[arg-type]
            "corpus": lambda: _bundled_source(corpus),  # type: ignore[arg-type]
            "dataset": lambda: _dataset_source(dataset, text_column, dataset_config, dataset_split),
        }[kind]()
        vocab = CharVocab(vocab) if isinstance(vocab, str) else vocab
        if on_unknown not in ("error", "skip", "replace"):
            raise ValueError(f"`on_unknown` must be 'error', 'skip' or 'replace', got {on_unknown!r}")
        given = None if vocab is None else [vocab.chars, on_unknown, replacement]
        identity = {"format_version": FORMAT_VERSION, "source": source.identity, "vocab": given}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        meta_path = folder / f"{key}.json"
        if meta_path.is_file():
            try:
                return cls(meta_path)
            except (OSError, ValueError):
                pass  # a damaged entry (a .bin deleted by hand, say) is simply rebuilt
        meta = {"format_version": FORMAT_VERSION, "source": source.description, "identity": identity}
        encoding = {"on_unknown": on_unknown, "replacement": replacement}
        cls._build(source, vocab, encoding, folder / f"{key}.bin", meta)
        return cls(meta_path)

    @staticmethod
    def _build(source: _Source, vocab: CharVocab | None, encoding: dict[str, Any], bin_path: Path, meta: dict) -> None:
        on_unknown = encoding["on_unknown"]
        # Pass 1: the length and the character set (or, with a given vocabulary, what it lacks and where).
        length, skipped, chars, missing = 0, 0, set[str](), dict[str, int]()
        for chunk in source.chunks():
            if vocab is None:
                chars.update(chunk)
            else:
                for char, position in vocab.unknown_chars(chunk).items():
                    missing.setdefault(char, length + position)
                    skipped += chunk.count(char) if on_unknown == "skip" else 0
            length += len(chunk)
        if length == 0:
            raise ValueError(f"the corpus is empty: {source.description} holds no characters")
        if vocab is None:
            vocab = CharVocab(sorted(chars))
        elif missing and on_unknown == "error":
            shown = ", ".join(f"{c!r} (first at {p})" for c, p in list(missing.items())[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise VocabularyError(
                f"{source.description} has {len(missing)} character(s) not in the vocabulary: {shown}{more}. "
                "Pass on_unknown='skip' or on_unknown='replace' (with `replacement`) to encode anyway."
            )
        total = length - skipped
        if total == 0:
            raise ValueError(f"the corpus is empty: every character of {source.description} was skipped")

        # Pass 2: encode chunk by chunk straight into the file, through a memmap of each slice's place in it. A
        # slice is unmapped once written, so the written pages leave this process (they stay in the page cache):
        # one map of the whole file would count the whole corpus in the resident size by the end.
        dtype = np.dtype(vocab.dtype)
        changed = RuntimeError(f"{source.description} changed while it was being encoded; prepare it again")
        with atomic_path(bin_path) as tmp:
            with tmp.open("r+b") as handle:
                handle.truncate(total * dtype.itemsize)
            written = 0
            for chunk in source.chunks():
                # encode_array makes several int64 arrays as long as its input (~40 bytes a character), so chunks
                # go in slices of 1M characters: the working memory stays near 40 MB whatever the chunk size.
                for start in range(0, len(chunk), _ENCODE_CHARS):
                    piece = chunk[start : start + _ENCODE_CHARS]
                    encoded = vocab.encode_array(piece, **encoding)
                    if written + len(encoded) > total:
                        raise changed
                    if len(encoded):  # (a memmap cannot be empty)
                        at = written * dtype.itemsize
                        np.memmap(tmp, dtype=dtype, mode="r+", offset=at, shape=encoded.shape)[:] = encoded
                    written += len(encoded)
            if written != total:
                raise changed
        meta.update(vocab=list(vocab.chars), length=total, dtype=dtype.name)
        atomic_write_text(bin_path.with_suffix(".json"), json.dumps(meta, indent=1))

    @property
    def vocab(self) -> CharVocab:
        """The vocabulary the ids refer to."""
        return self._vocab

    @property
    def ids(self) -> np.memmap:
        """All ids, a read-only memory-mapped 1-D array."""
        return self._ids

    @property
    def path(self) -> Path:
        """The ``<key>.bin`` file holding the ids."""
        return self._bin_path

    @property
    def source(self) -> str:
        """A description of the source the corpus was built from."""
        return self._meta["source"]

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"EncodedCorpus({self.source}, length={len(self)}, vocab_size={len(self._vocab)}, path='{self.path}')"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self._meta_path)}  # reopened by path: pickling must not copy the corpus

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def text(self, start: int = 0, stop: int | None = None) -> str:
        """Decode ``ids[start:stop]`` back into text (mind the size: this builds a Python string)."""
        return self._vocab.decode(self._ids[start:stop])

    def split(self, fractions: Sequence[float]) -> list[np.ndarray]:
        """Cut the ids into contiguous parts, in order, of the given fractions of the length (views, not copies).

        Args:
            fractions: non-negative fractions summing to 1, the first positive, e.g. ``(0.9, 0.05, 0.05)``.

        Raises:
            ValueError: for fractions that are negative, sum to something other than 1, or start with 0.
        """
        fractions = validate_split(fractions)
        bounds = [0, *(math.floor(f * len(self)) for f in np.cumsum(fractions)[:-1]), len(self)]
        return [self._ids[start:stop] for start, stop in itertools.pairwise(bounds)]
