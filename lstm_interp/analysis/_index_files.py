"""The files of a :class:`~lstm_interp.analysis.state_index.StateIndex` folder: the corpus streamed in, encoded to
``tokens.bin``, traced segment by segment into ``bits/<name>.bin``, and the sizes a whole folder's files must have.

The layout and the rules are :mod:`lstm_interp.analysis.state_index`'s docstring's; this module holds the writing.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_interp.tracing import QUANTITIES, state_quantity
from lstm_interp.vocab import CharVocab, VocabularyError

HEADER_NAME, TOKENS_NAME, BITS_DIR = "index.json", "tokens.bin", "bits"
_READ_BYTES = 1 << 22  # bytes per read of a corpus file

Corpus = str | os.PathLike | Sequence[str | os.PathLike]


def index_names(cell: str, num_layers: int, names: str | Sequence[str] | None) -> list[str]:
    per_layer = [f"layers.{i}.{q}" for i in range(num_layers) for q in QUANTITIES[cell]]
    if names is None:
        return [f"layers.{i}.{state_quantity(cell)}" for i in range(num_layers)]
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in per_layer]
    if not names or unknown:
        raise ValueError(f"`names` {unknown or names!r}: expected per-layer names of this {cell} model, {per_layer}")
    return list(dict.fromkeys(names))


def corpus_source(text_or_files: Corpus) -> str | list[Path]:
    """The text, or the files checked to exist (before anything is read); a ``str`` is always the text itself."""
    if isinstance(text_or_files, str):
        if not text_or_files:
            raise ValueError("the text is empty; there is nothing to index")
        return text_or_files
    files = [text_or_files] if isinstance(text_or_files, os.PathLike) else list(text_or_files)
    if not files or not all(isinstance(f, str | os.PathLike) for f in files):
        raise ValueError(f"`text_or_files` must be a str (the text), a path or a list of paths, got {text_or_files!r}")
    for file in map(Path, files):
        if file.is_dir():
            raise IsADirectoryError(f"corpus file {str(file)!r} is a folder; give the text files in it")
        if not file.is_file():
            raise FileNotFoundError(f"corpus file {str(file)!r} does not exist")
    return [Path(f) for f in files]


def _pieces(source: str | list[Path]) -> Iterator[tuple[str, str]]:
    """``(where, text)`` pieces of the corpus in order, decoding each file incrementally as strict UTF-8."""
    if isinstance(source, str):
        for i in range(0, len(source), _READ_BYTES):
            yield "the text", source[i : i + _READ_BYTES]
        return
    for file in source:
        decoder, offset = codecs.getincrementaldecoder("utf-8")("strict"), 0
        with open(file, "rb") as f:
            while True:
                data = f.read(_READ_BYTES)
                pending = len(decoder.getstate()[0])
                try:
                    piece = decoder.decode(data, final=not data)
                except UnicodeDecodeError as err:
                    at = offset - pending + err.start
                    raise ValueError(
                        f"corpus file {str(file)!r} is not UTF-8: byte {err.object[err.start]:#04x} at byte "
                        f"offset {at} ({err.reason}); convert it to UTF-8 first"
                    ) from None
                offset += len(data)
                if piece:
                    yield str(file), piece
                if not data:
                    break


class KnownText:
    """A corpus's pieces kept to a vocabulary, in order: the characters outside it dropped and counted, the first
    place of each noted (file and character offset), and the kept text's length and sha256.

    One reader for every pass that streams a corpus (the state index's ``tokens.bin``, the unit atlas's scan), so
    the rules and the error are the same everywhere.
    """

    def __init__(self, vocab: CharVocab) -> None:
        self.vocab = vocab
        self.digest = hashlib.sha256()
        self.length = 0
        self.skipped: Counter[str] = Counter()
        self.first: dict[str, dict[str, int]] = {}  # where -> character -> offset of its first occurrence
        self._read: dict[str, int] = {}  # characters read so far per file

    def pieces(self, source: str | list[Path]) -> Iterator[tuple[str, str]]:
        """``(where, kept text)`` for each piece of ``source`` (:func:`_pieces`), counting as it goes."""
        for where, piece in _pieces(source):
            read = self._read.get(where, 0)
            self._read[where] = read + len(piece)
            unknown = self.vocab.unknown_chars(piece)
            if unknown:
                self.skipped.update(c for c in piece if c not in self.vocab)
                for char, at in unknown.items():
                    self.first.setdefault(where, {}).setdefault(char, read + at)
                piece = "".join(c for c in piece if c in self.vocab)
            self.digest.update(piece.encode("utf-8", "surrogatepass"))
            self.length += len(piece)
            yield where, piece

    def check(self, on_unknown: str, *, recorded: str, task: str) -> None:
        """After the last piece: raise for unknown characters (``on_unknown="error"``) or for nothing kept.

        Raises:
            VocabularyError: characters outside the vocabulary, each named with where it first occurs.
            ValueError: no character of the vocabulary: nothing to ``task``.
        """
        if self.first and on_unknown == "error":
            listed = "; ".join(
                f"{where}: " + ", ".join(f"{c!r} (first at {at})" for c, at in list(chars.items())[:20])
                for where, chars in self.first.items()
            )
            problem = f"the corpus has {len(self.skipped)} character(s) not in the vocabulary: {listed}"
            hint = f"Pass on_unknown='skip' to drop them (their counts are recorded{recorded})."
            raise VocabularyError(f"{problem}. {hint}", problem=problem, hint=hint)
        if self.length == 0:
            raise ValueError(f"the corpus has no character of the vocabulary; there is nothing to {task}")

    def to_dict(self) -> dict[str, Any]:
        """``length``, ``sha256`` and ``skipped`` (most common first)."""
        return {"length": self.length, "sha256": self.digest.hexdigest(), "skipped": dict(self.skipped.most_common())}


def write_tokens(path: Path, vocab: CharVocab, source: str | list[Path], on_unknown: str) -> dict[str, Any]:
    """Encode the corpus into ``path`` (ids, ``vocab.dtype``); returns the indexed text's length, sha256, skips."""
    known = KnownText(vocab)
    with open(path, "wb") as out:
        for _, piece in known.pieces(source):
            out.write(vocab.encode_array(piece).astype(vocab.dtype).tobytes())
    known.check(on_unknown, recorded=" in the index", task="index")
    return known.to_dict()


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def expected_sizes(header: dict[str, Any], where: str) -> dict[str, int]:
    """File name -> size in bytes of every file a whole index with this header has (the header's own: any)."""
    try:
        steps, names, widths = header["steps"], header["names"], header["widths"]
        itemsize = np.dtype(header["tokens_dtype"]).itemsize
        fields = (header["threshold"], header["chars"], header["layer_names"])
        if not isinstance(steps, int) or steps < 1 or not isinstance(names, list) or not names:
            raise ValueError(f"steps {steps!r} and names {names!r} must be a positive integer and a non-empty list")
        # Names become file names under bits/: a name with a separator or "..", or an absolute one, could reach a
        # file outside the index folder (issue 21). Activation names are module paths: letters, digits, _ . and -.
        unsafe = [name for name in names if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name)]
        if unsafe:
            raise ValueError(f"names {unsafe!r} are not activation names (letters, digits, '_', '-' and single dots)")
        if not all(isinstance(widths.get(name), int) and widths[name] > 0 for name in names):
            raise ValueError(f"widths {widths!r} must give each of {names} a positive integer")
        if not isinstance(fields[0], int | float) or not isinstance(fields[1], str) or not isinstance(fields[2], list):
            raise ValueError(f"threshold, chars and layer_names have the wrong types: {fields!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"{where}: {HEADER_NAME} is broken ({type(err).__name__}: {err}); build the index again"
        ) from err
    sizes = {HEADER_NAME: -1, TOKENS_NAME: steps * itemsize}
    sizes.update({f"{BITS_DIR}/{name}.bin": widths[name] * -(-steps // 8) for name in names})
    return sizes
