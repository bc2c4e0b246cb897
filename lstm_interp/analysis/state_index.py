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

:meth:`StateIndex.match` ranks the corpus spans where selected cells are on together by LSTMVis's rules
(:mod:`lstm_interp.analysis.state_match`); :meth:`StateIndex.select` is :func:`~lstm_interp.select_cells` read from
the bits, so that a span of the corpus itself can be selected without tracing it again.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_interp._io import atomic_folder, atomic_write_text, read_json_file
from lstm_interp.analysis._index_files import (
    BITS_DIR,
    HEADER_NAME,
    TOKENS_NAME,
    Corpus,
    corpus_source,
    expected_sizes,
    index_names,
    write_tokens,
)
from lstm_interp.analysis.corpus_pass import corpus_pass, pass_trainer
from lstm_interp.analysis.corpus_scan import CorpusScan, scan_corpus
from lstm_interp.analysis.corpus_shards import DEFAULT_PRIME_CHARS, DEFAULT_SHARD_CHARS
from lstm_interp.analysis.index_bits import IndexBits
from lstm_interp.analysis.select_cells import check_span, check_threshold, units_with_pattern
from lstm_interp.analysis.state_match import Match, rank_matches
from lstm_interp.manifest import check_replaceable, model_provenance, read_manifest, verify_manifest, write_manifest
from lstm_interp.models.char_lstm import CharLSTM

if TYPE_CHECKING:  # Lightning is imported by the pass itself, when it runs (it takes seconds to import)
    import lightning.pytorch as pl

INDEX_KIND = "state_index"
INDEX_FORMAT = "lstm_interp.state_index"
INDEX_VERSION = 1
DEFAULT_CHUNK_CHARS = 16_384  # a multiple of the tracer's 2048-step chunks, so a segment ends where a chunk does

__all__ = ["DEFAULT_CHUNK_CHARS", "Match", "StateIndex"]


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
        text_or_files: Corpus | CorpusScan,
        path: str | os.PathLike,
        *,
        threshold: float = 0.3,
        names: str | Sequence[str] | None = None,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        shard_chars: int = DEFAULT_SHARD_CHARS,
        prime_chars: int = DEFAULT_PRIME_CHARS,
        on_unknown: str = "error",
        overwrite: bool = False,
        progress: Callable[[int, int], None] | None = None,
        trainer: pl.Trainer | None = None,
        **trainer_kwargs: Any,
    ) -> StateIndex | None:
        """Trace a corpus shard by shard on Lightning's engine and write its index folder at ``path`` (whole).

        The pass is a :func:`~lstm_interp.analysis.corpus_pass.corpus_pass`: any accelerator, number of processes
        or nodes; the bits do not depend on them (each shard is traced from a state warmed on the ``prime_chars``
        characters before it). Rank 0 writes the folder.

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
            shard_chars, prime_chars: the shards (rounded up to a multiple of 8) and their warm-up
                (:mod:`~lstm_interp.analysis.corpus_shards`).
            on_unknown: ``"error"`` or ``"skip"`` for characters outside the vocabulary.
            overwrite: replace ``path`` even if it holds files an earlier build did not write.
            progress: called with (characters traced, characters in all) as the pass goes (rank 0).
            trainer: the Trainer to run the pass on, or its arguments as keywords (``devices=2``, ...).

        Returns:
            The opened index on rank 0; ``None`` on the other ranks.

        Raises:
            FileNotFoundError, IsADirectoryError: a corpus file that is missing or a folder.
            ValueError: a non-UTF-8 file, an empty corpus, unknown names, a bad threshold or ``chunk_chars``.
            VocabularyError: characters outside the vocabulary with ``on_unknown="error"`` (each file's listed).
            FileExistsError: ``path`` holds files an index does not write.
            CorpusPassError: a rank failed during the pass (the folder is left as it was).
        """
        if not isinstance(model, CharLSTM):
            raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
        vocab, cfg = model._require_vocab(), model.config
        names = index_names(cfg.cell, cfg.num_layers, names)
        for name in names:
            threshold = check_threshold(threshold, name.rsplit(".", 1)[1])
        for label, value in (("chunk_chars", chunk_chars), ("shard_chars", shard_chars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{label}` must be a positive integer, got {value!r}")
        if on_unknown not in ("error", "skip"):
            raise ValueError(f"`on_unknown` must be 'error' or 'skip', got {on_unknown!r}")
        source = text_or_files.source if isinstance(text_or_files, CorpusScan) else corpus_source(text_or_files)
        path = Path(path)
        # On every rank, so that all of them stop at once, before the pass, on a folder that cannot be replaced.
        check_replaceable(path, INDEX_KIND, [HEADER_NAME, TOKENS_NAME, BITS_DIR], overwrite=overwrite)
        runner = pass_trainer(trainer, trainer_kwargs)
        scan = text_or_files if isinstance(text_or_files, CorpusScan) else scan_corpus(model, source,
                                                                                        on_unknown=on_unknown)
        bits = corpus_pass(model, scan, functools.partial(IndexBits, names, threshold), names_filter=names,
                           shard_chars=-(-shard_chars // 8) * 8, prime_chars=prime_chars,
                           segment_chars=-(-chunk_chars // 8) * 8, progress=progress, trainer=runner)  # fmt: skip
        if runner.global_rank != 0:
            return None
        with atomic_folder(path) as staging:
            text = write_tokens(staging / TOKENS_NAME, vocab, source, on_unknown)
            (staging / BITS_DIR).mkdir()
            widths = bits.write(staging / BITS_DIR)
            header = {
                "format": INDEX_FORMAT, "format_version": INDEX_VERSION, "rule": "value > threshold",
                "threshold": threshold, "names": names, "widths": widths, "steps": text["length"], "bit_order": "big",
                "cell": cfg.cell, "layer_names": [f"layers.{i}" for i in range(cfg.num_layers)], "chars": vocab.chars,
                "tokens_dtype": np.dtype(vocab.dtype).name, "text": text, "model": model_provenance(model),
                "shards": {"shard_chars": -(-shard_chars // 8) * 8, "prime_chars": prime_chars},
            }  # fmt: skip
            atomic_write_text(staging / HEADER_NAME, json.dumps(header, indent=1, ensure_ascii=False) + "\n")
            arguments = {"threshold": threshold, "names": names, "chunk_chars": chunk_chars, "on_unknown": on_unknown,
                         "shard_chars": shard_chars, "prime_chars": prime_chars}  # fmt: skip
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
        if not (path / HEADER_NAME).is_file():
            raise ValueError(f"{where} is not a state index: it has no {HEADER_NAME} (a partial copy?)")
        header = read_json_file(path / HEADER_NAME, "state index header")
        if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
            raise ValueError(f"{where}: {HEADER_NAME} is not a state index header (expected format {INDEX_FORMAT!r})")
        if header.get("format_version") != INDEX_VERSION:
            found = header.get("format_version")
            raise ValueError(f"{where}: index format_version {found!r} is not supported (expected {INDEX_VERSION})")
        expected = expected_sizes(header, where)
        manifest = read_manifest(path)
        if manifest is None or manifest.get("kind") != INDEX_KIND:
            raise ValueError(f"{where} has no state index manifest.json (written last): the folder is partial")
        problems = []
        inside = path.resolve()
        for name, size in expected.items():
            file = path / name
            if not file.resolve().is_relative_to(inside):  # a link that leads out of the folder (issue 21)
                problems.append(f"{name} (leads outside the folder, to {str(file.resolve())!r})")
            elif name not in manifest["files"]:
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

    def bits(self, name: str, units: Sequence[int] | None = None, start: int = 0, end: int | None = None) -> np.ndarray:
        """(units, steps) bool: whether each unit of ``name`` was on at each step of ``start`` to ``end``.

        Args:
            name: an indexed name (``"layers.1.cell"``).
            units: the units (rows), in this order; every unit if None.
            start, end: the steps (end exclusive, clipped to the corpus as a slice is); only their bytes are read.
        """
        if name not in self._bits:
            raise KeyError(f"{name!r} is not indexed; the index holds {self.names}")
        steps = range(self.num_steps)[slice(start, end)]
        lo, hi = steps.start, max(steps.start, steps.stop)
        columns = self._bits[name][:, lo >> 3 : -(-hi // 8)]  # only the bytes of the steps asked for
        rows = columns if units is None else columns[np.asarray(units, dtype=np.int64)]
        unpacked = np.unpackbits(np.asarray(rows), axis=1)
        return unpacked[:, lo & 7 : (lo & 7) + hi - lo].astype(bool)

    def text(self, start: int = 0, end: int | None = None) -> str:
        """The indexed text of steps ``start`` to ``end`` (exclusive; clipped to the corpus)."""
        rows = range(self.num_steps)[slice(start, end)]
        ids = np.asarray(self._tokens[rows.start : rows.stop])
        if ids.size and int(ids.max()) >= len(self._codepoints):
            # A header edited or swapped for another index's: name it rather than fail on an IndexError.
            step = rows.start + int(np.argmax(ids >= len(self._codepoints)))
            raise ValueError(
                f"{str(self.path)!r}: {TOKENS_NAME} holds id {int(ids.max())} (at step {step}), but {HEADER_NAME} "
                f"lists only {len(self.chars)} characters; the index is corrupt, build it again"
            )
        return self._codepoints[ids].tobytes().decode("utf-32-le")

    def passage(self, match: Match | tuple[int, int], context: int = 40) -> tuple[str, str, str]:
        """``(before, span, after)``: the span's text with up to ``context`` characters on each side."""
        start, end = (match.start, match.end) if isinstance(match, Match) else match
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise ValueError(f"`context` must be a number of characters >= 0, got {context!r}")
        lo, hi = max(0, start - context), min(self.num_steps, end + context)
        return self.text(lo, start), self.text(start, end), self.text(end, hi)

    # ------------------------------------------------------------------ selecting and matching
    def select(
        self,
        span: tuple[int, int] | Sequence[int],
        before: int = 1,
        after: int = 0,
        *,
        layer: str | int | None = None,
        quantity: str | None = None,
    ) -> list[tuple[str, int]]:
        """LSTMVis's selection over a span of the corpus, read from the bits (so at the index's threshold).

        The same rule as :func:`~lstm_interp.select_cells`: the units on at every step of ``span`` and off for
        ``before`` steps before it and ``after`` steps after it, the padding clipped at the corpus's edges; on a
        trace of the whole corpus at ``self.threshold`` both give the same cells.

        Args:
            span: ``(start, end)``, end exclusive, in the corpus's steps.
            before, after: steps that must be off before and after the span (LSTMVis's defaults: 1 and 0).
            layer: a layer name or index; ``None`` searches every indexed layer.
            quantity: the indexed quantity; ``None`` when the index holds one.

        Returns:
            ``(layer name, unit)`` pairs, by layer then unit, the form :meth:`match` takes.

        Raises:
            ValueError: an empty span or one outside the corpus, negative ``before``/``after``, an unknown layer or
                quantity, a layer that is not indexed.
        """
        start, end = check_span(span, self.num_steps)
        for label, value in (("before", before), ("after", after)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{label}` must be a number of steps >= 0, got {value!r}")
        quantity = self._quantity(quantity)
        layers = self.header["layer_names"]
        if layer is None:
            chosen = [name.rsplit(".", 1)[0] for name in self.names if name.rsplit(".", 1)[1] == quantity]
        elif isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < len(layers):
            chosen = [layers[layer]]
        elif isinstance(layer, str) and layer in layers:
            chosen = [layer]
        else:
            raise ValueError(f"unknown layer {layer!r}; the model's layers are {layers} (or 0 .. {len(layers) - 1})")
        lo, hi = max(0, start - before), min(self.num_steps, end + after)
        selected: list[tuple[str, int]] = []
        for name in chosen:
            if f"{name}.{quantity}" not in self._bits:
                raise ValueError(f"{name}.{quantity!s} is not indexed; the index holds {self.names}")
            on = self.bits(f"{name}.{quantity}", None, lo, hi).T  # (window, H)
            selected += [(name, unit) for unit in units_with_pattern(on, start - lo, end - lo)]
        return selected

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
        return rank_matches(self._bits, self.num_steps, selection, top, min_length, off_before, off_after)

    def _quantity(self, quantity: str | None) -> str:
        """The indexed quantity meant: ``quantity`` itself, or the index's one when None."""
        quantities = sorted({name.rsplit(".", 1)[1] for name in self.names})
        if quantity is None and len(quantities) > 1:
            raise ValueError(f"the index holds the quantities {quantities}: pass `quantity=` to say which one")
        quantity = quantities[0] if quantity is None else quantity
        if quantity not in quantities:
            raise ValueError(f"the index holds the quantities {quantities}, not {quantity!r}")
        return quantity

    def _selection(self, cells: Sequence[tuple[str | int, int]], quantity: str | None) -> list[tuple[str, int]]:
        """``(indexed name, unit)`` of each cell, checked, each once, in the given order."""
        if isinstance(cells, str | bytes) or not isinstance(cells, Sequence) or not cells:
            raise ValueError(f"`cells` must be a non-empty list of (layer, unit) pairs, got {cells!r}")
        quantity = self._quantity(quantity)
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
