"""``StateIndex``: a corpus's states thresholded to one bit per unit per character, memory-mapped, and LSTMVis's match.

:meth:`StateIndex.build` traces a corpus of any length in segments, the state carried from each to the next (so the
bits equal those of one trace of the whole text), and writes a folder, whole (:func:`~lstm_interp._io.atomic_folder`):

- ``bits/<name>.bin``: per indexed name (``layers.0.cell`` ...), a (H, ceil(T/8)) uint8 array, unit-major so that a
  selection reads few rows; bit ``t`` of row ``u`` (``np.packbits`` order, most significant bit first) is whether
  unit ``u`` was on at step ``t``: its raw value ``> threshold``, the rule of
  :func:`~lstm_interp.analysis.select_cells.select_cells`;
- ``tokens.bin``: the indexed text as vocabulary ids (one byte each for a vocabulary of at most 256 characters), so
  that matches can show their passages;
- ``index.json``: format, threshold, names, widths, steps, vocabulary, the model's provenance (config and weights
  sha256), the text's sha256 (as :func:`~lstm_interp.manifest.text_provenance` hashes it), skipped characters;
- ``manifest.json``: written last, the sha256 of every file.

Files are read incrementally as UTF-8; a missing file, a non-UTF-8 file or (with ``on_unknown="error"``) characters
outside the vocabulary fail, naming the file, before anything is traced. ``on_unknown="skip"`` drops such characters
(as :func:`~lstm_interp.trace` does) and records how many of each were dropped; the stored text is the text traced.

:meth:`StateIndex.match` follows LSTMVis's ``query_similar_activations`` (HendrikStrobelt/LSTMVis,
``lstmdata/data_handler.py``): the candidates are, for every ``k`` from the selection's size down to 1, the maximal
runs of at least ``min_length`` (LSTMVis's ``cut_off = 2``) steps where at least ``k`` selected cells are on
(``hf.rle`` of the count clipped at ``k``); for each, the cells fully on over the span (and, with LSTMVis's zero
constraints ``off_before``/``off_after``, off at the step before/after it) are intersected and united with the
selection; matches are ranked by the largest intersection, then the smallest union, then the longest span (then the
earliest, where LSTMVis's order is a dict's). Where LSTMVis cuts corners, this does not: it reads every step (LSTMVis's
"fast" mode only the first 500,000) and keeps every candidate that could rank in the top (LSTMVis at most 1,000 or
10,000, chosen before ranking); levels stop only once ``top`` candidates have an intersection that no lower level can
reach. Spans at the text's edges are kept (LSTMVis drops those touching the first or last step), a constraint past an
edge imposes nothing, and candidates with an empty intersection are not matches. The union counts the cells of the
selection's layers, as LSTMVis's counts those of its one source (layer). No constraint is the default here (the
spans where the cells are on together); LSTMVis's client sends its brush's, left on by default
(``lstm_server.yaml``: ``constraints`` 1,0), which ``off_before=True`` reproduces. Memory per step: 8 bytes for
every 64 selected cells (their bits as ``uint64`` words; twice that while they are packed) and 4 for their count,
plus the candidate spans' bytes in blocks of at most 32 MB.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_interp._io import atomic_folder, atomic_write_text
from lstm_interp.analysis.select_cells import check_threshold
from lstm_interp.manifest import check_replaceable, model_provenance, read_manifest, verify_manifest, write_manifest
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import QUANTITIES, state_quantity, trace
from lstm_interp.vocab import CharVocab, VocabularyError

INDEX_KIND = "state_index"
INDEX_FORMAT = "lstm_interp.state_index"
INDEX_VERSION = 1
HEADER_NAME, TOKENS_NAME, BITS_DIR = "index.json", "tokens.bin", "bits"
DEFAULT_CHUNK_CHARS = 16_384  # a multiple of the tracer's 2048-step chunks, so a segment ends where a chunk does
_READ_BYTES = 1 << 22  # bytes per read of a corpus file
_GATHER_BYTES = 1 << 25  # units x bytes gathered per block when checking which cells are on over the spans
_BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

Corpus = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass(frozen=True)
class Match:
    """A span of the corpus where (some of) the selected cells are on together, as :meth:`StateIndex.match` ranks it.

    Args:
        start, end: the span's steps, end exclusive.
        intersection: selected cells on over the whole span.
        union: cells of the selection's layers that are selected or on over the whole span.
        cells: ``(layer, unit)`` of every cell of those layers on over the whole span, selected or not.
    """

    start: int
    end: int
    intersection: int
    union: int
    cells: tuple[tuple[str, int], ...]

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def jaccard(self) -> float:
        """``intersection / union``: 1 when exactly the selected cells are on over the span."""
        return self.intersection / self.union

    @property
    def scores(self) -> dict[str, float]:
        return {"intersection": self.intersection, "union": self.union, "jaccard": self.jaccard, "length": self.length}


class StateIndex:
    """An on/off index of a corpus's states at one threshold; made by :meth:`build`, read by :meth:`open`."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.header = path, header
        self.threshold: float = header["threshold"]
        self.names: list[str] = list(header["names"])
        self.widths: dict[str, int] = dict(header["widths"])
        self.num_steps: int = header["steps"]
        self.chars: str = header["chars"]
        self._bytes = -(-self.num_steps // 8)
        self._bits = {
            name: np.memmap(path / BITS_DIR / f"{name}.bin", np.uint8, "r", shape=(self.widths[name], self._bytes))
            for name in self.names
        }
        self._tokens = np.memmap(path / TOKENS_NAME, np.dtype(header["tokens_dtype"]), "r", shape=(self.num_steps,))
        self._codepoints = np.array([ord(c) for c in self.chars], dtype="<u4")

    def __len__(self) -> int:
        return self.num_steps

    def __repr__(self) -> str:
        return f"StateIndex({str(self.path)!r}, steps={self.num_steps}, names={self.names}, threshold={self.threshold})"

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        model: CharLSTM,
        text_or_files: Corpus,
        path: str | os.PathLike,
        *,
        threshold: float = 0.3,
        names: str | Sequence[str] | None = None,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        on_unknown: str = "error",
    ) -> StateIndex:
        """Trace a corpus segment by segment and write its index folder at ``path`` (replaced whole).

        Args:
            model: the network (its vocabulary encodes the text).
            text_or_files: the text itself (a ``str``), or a file path (``Path``) or a list of them, read as UTF-8
                and indexed end to end as one text.
            path: the index folder: new, empty, or an earlier index.
            threshold: a unit is on where its raw value is ``> threshold``.
            names: the quantity-layer names to index (``"layers.1.hidden"``, ...); default the state of every layer
                (the cell state of an LSTM, the hidden state of a GRU or RNN).
            chunk_chars: characters per traced segment (rounded up to a multiple of 8, so each fills whole bytes);
                memory holds one segment's activations.
            on_unknown: ``"error"`` or ``"skip"`` for characters outside the vocabulary.

        Raises:
            FileNotFoundError, IsADirectoryError: a corpus file that is missing or a folder.
            ValueError: a non-UTF-8 file, an empty corpus, unknown names, a bad threshold or ``chunk_chars``.
            VocabularyError: characters outside the vocabulary with ``on_unknown="error"`` (each file's listed).
            FileExistsError: ``path`` holds files an index does not write.
        """
        if not isinstance(model, CharLSTM):
            raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
        vocab, cfg = model._require_vocab(), model.config
        names = _index_names(cfg.cell, cfg.num_layers, names)
        for name in names:
            threshold = check_threshold(threshold, name.rsplit(".", 1)[1])
        if isinstance(chunk_chars, bool) or not isinstance(chunk_chars, int) or chunk_chars < 1:
            raise ValueError(f"`chunk_chars` must be a positive integer, got {chunk_chars!r}")
        if on_unknown not in ("error", "skip"):
            raise ValueError(f"`on_unknown` must be 'error' or 'skip', got {on_unknown!r}")
        source = _corpus(text_or_files)
        path = Path(path)
        check_replaceable(path, INDEX_KIND, [HEADER_NAME, TOKENS_NAME, BITS_DIR])
        with atomic_folder(path) as staging:
            text = _write_tokens(staging / TOKENS_NAME, vocab, source, on_unknown)
            widths = _write_bits(
                model, staging, names, vocab.dtype, text["length"], threshold, -(-chunk_chars // 8) * 8
            )
            header = {
                "format": INDEX_FORMAT, "format_version": INDEX_VERSION, "rule": "value > threshold",
                "threshold": threshold, "names": names, "widths": widths, "steps": text["length"], "bit_order": "big",
                "cell": cfg.cell, "layer_names": [f"layers.{i}" for i in range(cfg.num_layers)], "chars": vocab.chars,
                "tokens_dtype": np.dtype(vocab.dtype).name, "text": text, "model": model_provenance(model),
            }  # fmt: skip
            atomic_write_text(staging / HEADER_NAME, json.dumps(header, indent=1, ensure_ascii=False) + "\n")
            arguments = {"threshold": threshold, "names": names, "chunk_chars": chunk_chars, "on_unknown": on_unknown}
            files = None if isinstance(source, str) else [os.fspath(f) for f in source]
            write_manifest(
                staging,
                INDEX_KIND,
                model=header["model"],
                texts={"text": text},
                arguments={**arguments, "files": files},
            )
        return cls.open(path)

    # ------------------------------------------------------------------ reading
    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = False) -> StateIndex:
        """Open an index folder written by :meth:`build`, checking its header and the size of every file.

        Args:
            verify: also check every file's sha256 against the manifest (reads the whole index).

        Raises:
            FileNotFoundError, NotADirectoryError: no folder at ``path``.
            ValueError: a folder that is not a whole index (no header or manifest, a file missing or of the wrong
                size, a header of another format or version), naming what is wrong.
        """
        path = Path(path)
        where = repr(str(path))
        if not path.exists():
            raise FileNotFoundError(f"no state index at {where}")
        if not path.is_dir():
            raise NotADirectoryError(f"{where} is a file; a state index is a folder written by StateIndex.build")
        try:
            header = json.loads((path / HEADER_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{where} is not a state index: it has no {HEADER_NAME} (a partial copy?)") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{where}: {HEADER_NAME} is not valid JSON ({err}); build the index again") from err
        if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
            raise ValueError(f"{where}: {HEADER_NAME} is not a state index header (expected format {INDEX_FORMAT!r})")
        if header.get("format_version") != INDEX_VERSION:
            found = header.get("format_version")
            raise ValueError(f"{where}: index format_version {found!r} is not supported (expected {INDEX_VERSION})")
        expected = _expected_sizes(header, where)
        manifest = read_manifest(path)
        if manifest is None or manifest.get("kind") != INDEX_KIND:
            raise ValueError(f"{where} has no state index manifest.json (written last): the folder is partial")
        problems = []
        for name, size in expected.items():
            file = path / name
            if name not in manifest["files"]:
                problems.append(f"{name} (not in manifest.json)")
            elif not file.is_file():
                problems.append(f"{name} (missing)")
            elif size >= 0 and file.stat().st_size != size:
                problems.append(f"{name} ({file.stat().st_size} bytes, expected {size})")
        if problems:
            raise ValueError(f"{where} is not a whole state index: {', '.join(problems)}; build it again")
        if verify:
            verify_manifest(path, list(expected))
        return cls(path, header)

    def bits(self, name: str, units: Sequence[int] | None = None) -> np.ndarray:
        """(units, T) bool: whether each unit of ``name`` was on at each step (every unit if ``units`` is None)."""
        if name not in self._bits:
            raise KeyError(f"{name!r} is not indexed; the index holds {self.names}")
        rows = self._bits[name] if units is None else self._bits[name][np.asarray(units, dtype=np.int64)]
        return np.unpackbits(rows, axis=1, count=self.num_steps).astype(bool)

    def text(self, start: int = 0, end: int | None = None) -> str:
        """The indexed text of steps ``start`` to ``end`` (exclusive; clipped to the corpus)."""
        rows = range(self.num_steps)[slice(start, end)]
        ids = np.asarray(self._tokens[rows.start : rows.stop])
        return self._codepoints[ids].tobytes().decode("utf-32-le")

    def passage(self, match: Match | tuple[int, int], context: int = 40) -> tuple[str, str, str]:
        """``(before, span, after)``: the span's text with up to ``context`` characters on each side."""
        start, end = (match.start, match.end) if isinstance(match, Match) else match
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise ValueError(f"`context` must be a number of characters >= 0, got {context!r}")
        lo, hi = max(0, start - context), min(self.num_steps, end + context)
        return self.text(lo, start), self.text(start, end), self.text(end, hi)

    # ------------------------------------------------------------------ matching
    def match(
        self,
        cells: Sequence[tuple[str | int, int]],
        top: int = 50,
        *,
        quantity: str | None = None,
        min_length: int = 2,
        off_before: bool = False,
        off_after: bool = False,
    ) -> list[Match]:
        """The corpus spans where the selected cells are on together, best first (LSTMVis's ranking, module docstring).

        Args:
            cells: ``(layer, unit)`` pairs, as :func:`select_cells` returns; a layer is a name or an index.
            top: how many matches to return.
            quantity: the indexed quantity the units belong to; ``None`` when the index holds one.
            min_length: the shortest span (LSTMVis: 2).
            off_before, off_after: LSTMVis's zero constraints: a cell counts as on over a span only if it is off at
                the step before (after) it.

        Raises:
            ValueError: no cells, an unknown layer or quantity, a unit out of range, a bad ``top`` or ``min_length``.
        """
        for label, value in (("top", top), ("min_length", min_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{label}` must be a positive integer, got {value!r}")
        selection = self._selection(cells, quantity)
        n, T = len(selection), self.num_steps
        words = self._step_words(selection)  # (W, T + 1): bit i of word i // 64 = selected cell i on; a zero pad step
        count = sum(_popcount(w).astype(np.int32) for w in words)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        highest = int(count.max())  # LSTMVis starts at n; the levels above the most cells on at once are empty
        for k in range(highest, 0, -1):  # LSTMVis's test_cell_number: runs where at least k selected cells are on
            edges = np.flatnonzero(np.diff(count[:T] >= k, prepend=False, append=False))
            starts, ends = edges[0::2], edges[1::2]
            keep = ends - starts >= min_length
            bounds = np.stack([starts[keep], ends[keep]], axis=1).ravel()
            if k < highest and len(bounds):  # a run whose fewest on is above k was found at a higher level
                keep = np.minimum.reduceat(count, bounds)[0::2] == k
                bounds = bounds.reshape(-1, 2)[keep].ravel()
            if len(bounds):
                on = np.bitwise_and.reduceat(words, bounds, axis=1)[:, 0::2]  # (W, m): selected cells on throughout
                starts, ends = bounds[0::2], bounds[1::2]
                if off_before:  # starts - 1 == -1 reads the zero pad step: nothing is required before the text
                    on &= ~words[:, starts - 1]
                if off_after:
                    on &= ~words[:, ends]
                found.append((starts, ends, sum(_popcount(w).astype(np.int32) for w in on)))
            if sum(int((inter >= k).sum()) for *_, inter in found) >= top:
                break  # every span of a lower level has an intersection below k: none can rank in the top
        if not found:
            return []
        starts, ends, inter = (np.concatenate(parts) for parts in zip(*found, strict=True))
        cut = max(1, np.sort(inter)[::-1][min(top, len(inter)) - 1])
        chosen = inter >= cut  # only these can rank in the top; the union is needed for them alone
        starts, ends, inter = starts[chosen], ends[chosen], inter[chosen]
        union = n + sum(
            self._on_over(name, starts, ends, off_before, off_after, exclude=units).sum(axis=1)
            for name, units in _by_name(selection).items()
        )
        best = np.lexsort((starts, -(ends - starts), union, -inter))[:top]
        starts, ends, inter, union = starts[best], ends[best], inter[best], union[best]
        layer_of = {name: name.rsplit(".", 1)[0] for name in self.names}
        full = {name: self._on_over(name, starts, ends, off_before, off_after) for name in _by_name(selection)}
        return [
            Match(
                int(s), int(e), int(i), int(u),
                tuple((layer_of[name], int(unit)) for name, on in full.items() for unit in np.flatnonzero(on[j])),
            )
            for j, (s, e, i, u) in enumerate(zip(starts, ends, inter, union, strict=True))
        ]  # fmt: skip

    def _selection(self, cells: Sequence[tuple[str | int, int]], quantity: str | None) -> list[tuple[str, int]]:
        """``(indexed name, unit)`` of each cell, checked, each once, in the given order."""
        if isinstance(cells, str | bytes) or not isinstance(cells, Sequence) or not cells:
            raise ValueError(f"`cells` must be a non-empty list of (layer, unit) pairs, got {cells!r}")
        quantities = sorted({name.rsplit(".", 1)[1] for name in self.names})
        if quantity is None and len(quantities) > 1:
            raise ValueError(f"the index holds the quantities {quantities}: pass `quantity=` to say which one")
        quantity = quantities[0] if quantity is None else quantity
        layers = self.header["layer_names"]
        chosen: dict[tuple[str, int], None] = {}
        for cell in cells:
            if not isinstance(cell, Sequence) or isinstance(cell, str) or len(cell) != 2:
                raise ValueError(f"each cell must be a (layer, unit) pair, got {cell!r}")
            layer, unit = cell
            if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < len(layers):
                layer = layers[layer]
            name = f"{layer}.{quantity}"
            if name not in self._bits:
                raise ValueError(f"cell {cell!r}: {name!r} is not indexed; the index holds {self.names}")
            if isinstance(unit, bool) or not isinstance(unit, int | np.integer) or not 0 <= unit < self.widths[name]:
                raise ValueError(f"cell {cell!r}: the unit must be an integer in 0 .. {self.widths[name] - 1}")
            chosen[(name, int(unit))] = None
        return list(chosen)

    def _step_words(self, selection: list[tuple[str, int]]) -> np.ndarray:
        """(W, T + 1) uint64: bit ``i % 64`` of word ``i // 64`` at step t is whether selected cell ``i`` is on."""
        T, groups = self.num_steps, -(-len(selection) // 8)
        stacked = np.zeros((-(-groups // 8) * 8, T + 1), dtype=np.uint8)
        for i, (name, unit) in enumerate(selection):  # eight cells' bits make one byte per step, cell 8g at bit 0
            stacked[i // 8, :T] |= np.unpackbits(self._bits[name][unit], count=T) << np.uint8(i % 8)
        return np.ascontiguousarray(stacked.reshape(-1, 8, T + 1).transpose(0, 2, 1)).view("<u8")[..., 0]

    def _on_over(
        self,
        name: str,
        starts: np.ndarray,
        ends: np.ndarray,
        off_before: bool,
        off_after: bool,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        """(m, H) bool: which units of ``name`` are on at every step of each span (and off around it, if asked)."""
        packed, T, units = self._bits[name], self.num_steps, self._bits[name].shape[0]
        # Spans are cut into pieces of at most `limit` bytes, checked in blocks of at most `limit` bytes (for every
        # unit: _GATHER_BYTES), and the pieces of each span ANDed: memory stays bounded whatever the spans' lengths.
        limit = max(1, _GATHER_BYTES // units)
        pieces = -(-(((ends - 1) >> 3) - (starts >> 3) + 1) // limit)
        owner = np.repeat(np.arange(len(starts)), pieces)
        piece = np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        lo = np.maximum(starts[owner], ((starts[owner] >> 3) + piece * limit) * 8)
        hi = np.minimum(ends[owner], ((starts[owner] >> 3) + (piece + 1) * limit) * 8)
        first = lo >> 3
        widths = ((hi - 1) >> 3) - first + 1
        whole = np.empty((len(owner), units), dtype=bool)
        ends_at, j = np.cumsum(widths), 0
        while j < len(owner):
            k = max(j + 1, int(np.searchsorted(ends_at, ends_at[j] - widths[j] + limit, side="right")))
            whole[j:k] = _all_ones(packed, lo[j:k], hi[j:k], first[j:k], widths[j:k])
            j = k
        cut = len(owner) > len(starts)
        result = np.logical_and.reduceat(whole, np.cumsum(pieces) - pieces, axis=0) if cut else whole
        if off_before:
            result &= ~(_bit_at(packed, starts - 1) & (starts > 0)[:, None])
        if off_after:
            result &= ~(_bit_at(packed, np.minimum(ends, T - 1)) & (ends < T)[:, None])
        result[:, list(exclude)] = False
        return result


def _all_ones(
    packed: np.ndarray, starts: np.ndarray, ends: np.ndarray, first: np.ndarray, widths: np.ndarray
) -> np.ndarray:
    """(m, H) bool: whether each unit's bits are all 1 over each span, checked a byte at a time."""
    units = packed.shape[0]
    if not len(starts):
        return np.zeros((0, units), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
    columns = np.repeat(first - offsets, widths) + np.arange(int(widths.sum()))
    ignore = np.zeros(len(columns), dtype=np.uint64)  # bits of the first and last byte outside the span count as on
    ignore[offsets] |= ((0xFF << (8 - (starts & 7))) & 0xFF).astype(np.uint64)
    ignore[offsets + widths - 1] |= (0xFF >> (((ends - 1) & 7) + 1)).astype(np.uint64)
    # Step-major, eight units to a uint64, so that the reduction over each span's bytes runs along contiguous rows
    # (a reduceat along the rows of the unit-major array is ~10x slower); padding units count as on.
    gathered = np.full((len(columns), -(-units // 8) * 8), 0xFF, dtype=np.uint8)
    gathered[:, :units] = np.asarray(packed[:, columns]).T
    words = gathered.view(np.uint64)
    words |= (ignore * np.uint64(0x0101_0101_0101_0101))[:, None]
    reduced = np.bitwise_and.reduceat(words, offsets, axis=0)  # (m, units / 8)
    return reduced.view(np.uint8)[:, :units] == 0xFF


def _bit_at(packed: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(m, H) bool: each unit's bit at each step (``steps`` clipped into the text; callers mask the clipped ones)."""
    steps = np.clip(steps, 0, None)
    return ((np.asarray(packed[:, steps >> 3]).T >> (7 - (steps & 7)).astype(np.uint8)[:, None]) & 1).astype(bool)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, words.itemsize)
    return _BYTE_COUNTS[as_bytes].sum(axis=-1, dtype=np.uint8)


def _by_name(selection: list[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for name, unit in selection:
        grouped.setdefault(name, []).append(unit)
    return grouped


# ---------------------------------------------------------------------------------------------------------- building
def _index_names(cell: str, num_layers: int, names: str | Sequence[str] | None) -> list[str]:
    per_layer = [f"layers.{i}.{q}" for i in range(num_layers) for q in QUANTITIES[cell]]
    if names is None:
        return [f"layers.{i}.{state_quantity(cell)}" for i in range(num_layers)]
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in per_layer]
    if not names or unknown:
        raise ValueError(f"`names` {unknown or names!r}: expected per-layer names of this {cell} model, {per_layer}")
    return list(dict.fromkeys(names))


def _corpus(text_or_files: Corpus) -> str | list[Path]:
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


def _write_tokens(path: Path, vocab: CharVocab, source: str | list[Path], on_unknown: str) -> dict[str, Any]:
    """Encode the corpus into ``path`` (ids, ``vocab.dtype``); returns the indexed text's length, sha256, skips."""
    digest, length, skipped, first_unknown = hashlib.sha256(), 0, Counter(), {}
    places: dict[str, int] = {}  # characters read so far per file, for the positions of unknown characters
    with open(path, "wb") as out:
        for where, piece in _pieces(source):
            ids = vocab.encode_array(piece, on_unknown="skip")
            read, places[where] = places.get(where, 0), places.get(where, 0) + len(piece)
            if len(ids) < len(piece):
                kept = "".join(c for c in piece if c in vocab)
                skipped.update(c for c in piece if c not in vocab)
                for char, at in vocab.unknown_chars(piece).items():
                    first_unknown.setdefault(where, {}).setdefault(char, read + at)
                piece = kept
            out.write(ids.astype(vocab.dtype).tobytes())
            digest.update(piece.encode("utf-8", "surrogatepass"))
            length += len(ids)
    if first_unknown and on_unknown == "error":
        listed = "; ".join(
            f"{where}: " + ", ".join(f"{c!r} (first at {at})" for c, at in list(chars.items())[:20])
            for where, chars in first_unknown.items()
        )
        problem = f"the corpus has {len(skipped)} character(s) not in the vocabulary: {listed}"
        hint = "Pass on_unknown='skip' to drop them (their counts are recorded in the index)."
        raise VocabularyError(f"{problem}. {hint}", problem=problem, hint=hint)
    if length == 0:
        raise ValueError("the corpus has no character of the vocabulary; there is nothing to index")
    return {"length": length, "sha256": digest.hexdigest(), "skipped": dict(skipped.most_common())}


def _write_bits(
    model: CharLSTM, folder: Path, names: list[str], dtype: np.dtype, steps: int, threshold: float, segment: int
) -> dict[str, int]:
    """Trace the encoded corpus ``segment`` steps at a time (state carried) and write each name's bits in place."""
    (folder / BITS_DIR).mkdir()
    tokens = np.memmap(folder / TOKENS_NAME, dtype, "r", shape=(steps,))
    row_bytes, files, state = -(-steps // 8), {}, None
    try:
        for start in range(0, steps, segment):
            ids = torch.from_numpy(np.asarray(tokens[start : start + segment], dtype=np.int64))
            segment_trace = trace(model, ids, names_filter=names, state=state)
            state = segment_trace.final_state
            for name in names:
                on = segment_trace[name].numpy() > threshold  # (L, H)
                if name not in files:
                    files[name] = os.open(folder / BITS_DIR / f"{name}.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
                    os.ftruncate(files[name], on.shape[1] * row_bytes)
                packed = np.ascontiguousarray(np.packbits(on, axis=0).T)  # (H, ceil(L / 8)), at byte start // 8
                for unit, row in enumerate(packed):  # pwrite, not a memmap: written pages do not stay resident
                    os.pwrite(files[name], row.tobytes(), unit * row_bytes + start // 8)
        return {name: os.fstat(fd).st_size // row_bytes for name, fd in files.items()}
    finally:
        for fd in files.values():
            os.close(fd)
        del tokens


def _expected_sizes(header: dict[str, Any], where: str) -> dict[str, int]:
    """File name -> size in bytes of every file a whole index with this header has (the header's own: any)."""
    try:
        steps, names, widths = header["steps"], header["names"], header["widths"]
        itemsize = np.dtype(header["tokens_dtype"]).itemsize
        fields = (header["threshold"], header["chars"], header["layer_names"])
        if not isinstance(steps, int) or steps < 1 or not isinstance(names, list) or not names:
            raise ValueError(f"steps {steps!r} and names {names!r} must be a positive integer and a non-empty list")
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
