"""``UnitAtlas``: every unit of every layer described from one streaming pass over a corpus of any length.

Neuroscope shows, for every neuron, the corpus passages where it is most active; LSTMVis selects by threshold over a
corpus. The atlas gives an LSTM's units that corpus view with their exact gates and causal checks. For each unit of
the chosen layers, of one quantity (the state by default: an LSTM's cell, shown as ``tanh(c)``):

- **contexts**: its ``k`` highest and ``k`` lowest peaks over the whole corpus, one per passage, each with ``window``
  characters either side and the exact values (:class:`~lstm_interp.analysis.context_heap.ContextHeap`);
- over the whole corpus, its **histogram**, **saturation** and **gate habits**
  (:class:`~lstm_interp.analysis.unit_stats.UnitStats`);
- on the **feature sample**, the corpus's first ``feature_chars`` characters (AUC and r need every value): its best
  features with their controls by ``find_cells``'s ranking rule, whether one explains it (the others are "hard to
  tell", :mod:`~lstm_interp.analysis.unit_features`), and whether it is pinned near +-1 there (``pinned_units``);
- its **output**: the characters a last-layer unit raises and lowers through the readout weights, and the change in
  loss when its state is zeroed, on the first ``ablation_chars`` characters
  (:mod:`~lstm_interp.analysis.output_effects`).

:meth:`update` (each segment's trace and start) and :meth:`merge` (consecutive parts) keep only bounded running
statistics and the samples; the merge of two halves equals one pass (heaps and counts exactly, gate sums to float64
rounding). :meth:`finish` does the samples' work and makes one card per unit (:meth:`card`, the JSON that the pages
and the live explorer show; :mod:`~lstm_interp.analysis.atlas_cards`). :meth:`write` and :meth:`load` read and write
``atlas.json`` and ``contexts.safetensors`` (each context's exact raw float32 values, its character ids, int16 with -1
outside the corpus, and its position: ``<layer>.<top|bottom>.<values|ids|positions>``); the folder with its pages is
:func:`lstm_interp.report.atlas_pages.write_atlas_folder`'s.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from lstm_interp._io import atomic_write_text
from lstm_interp.analysis._index_files import Corpus
from lstm_interp.analysis.atlas_cards import (
    ATLAS_FORMAT,
    ATLAS_NAME,
    ATLAS_VERSION,
    CONTEXTS_NAME,
    FEATURE_ROWS,
    atlas_meta,
    layer_cards,
    read_atlas_json,
)
from lstm_interp.analysis.context_heap import ContextHeap
from lstm_interp.analysis.corpus_pass import corpus_pass, pass_trainer
from lstm_interp.analysis.corpus_scan import scan_corpus
from lstm_interp.analysis.corpus_shards import DEFAULT_PRIME_CHARS, DEFAULT_SHARD_CHARS
from lstm_interp.analysis.output_effects import ablation_effects, readout_effects
from lstm_interp.analysis.unit_features import UnitFeatures, unit_features
from lstm_interp.analysis.unit_stats import UnitStats
from lstm_interp.features import get_feature
from lstm_interp.manifest import model_provenance
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import QUANTITIES, Trace, display_values, state_quantity
from lstm_interp.tracing.most_variable_units import pinned_units
from lstm_interp.tracing.trace_segments import DEFAULT_SEGMENT_CHARS

if TYPE_CHECKING:  # Lightning is imported by the pass itself, when it runs (it takes seconds to import)
    import lightning.pytorch as pl

__all__ = ["UnitAtlas"]

DEFAULT_K, DEFAULT_WINDOW, DEFAULT_BINS = 20, 40, 40
DEFAULT_FEATURE_CHARS, DEFAULT_ABLATION_CHARS = 20_000, 1_000

Log = Callable[[str], None]


class _Layer:
    """The running statistics of one layer's units."""

    def __init__(self, units: int, quantity: str, cell: str, k: int, window: int, bins: int) -> None:
        self.top = ContextHeap(units, k, window)
        self.bottom = ContextHeap(units, k, window, largest=False)
        self.stats = UnitStats(units, quantity, cell, bins)
        self.sample: list[Tensor] = []  # the feature sample's raw values, (n, H) pieces


class UnitAtlas:
    """Per unit: contexts, histogram, saturation, gate habits, features and output effects (module docstring).

    Args:
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        layer_names: the model's layers, as traces name them (``layers.0``, ...).
        hidden_size: units per layer.
        layers: the layers described (names or indices; default all).
        quantity: the per-layer quantity described (default the state: ``cell`` or ``hidden``).
        k: contexts kept per unit and direction. window: characters either side of a context.
        bins: histogram bins over the displayed range -1..+1.
        feature_chars: the feature sample (the corpus's first characters); 0 scores no feature.
        ablation_chars: the ablation sample (the corpus's first characters); 0 ablates nothing.

    Raises:
        ValueError: an unknown cell, layer or quantity (naming the known ones), or a size out of range.

    Example::

        >>> atlas = UnitAtlas.build(load_pretrained("novel"), Path("war_and_peace.txt"))  # doctest: +SKIP
        >>> atlas.card("layers.1", 254)["features"][0]["feature"]  # doctest: +SKIP
        'inside_quotes'
    """

    def __init__(
        self,
        cell: str,
        layer_names: Sequence[str],
        hidden_size: int,
        *,
        layers: Sequence[str | int] | str | int | None = None,
        quantity: str | None = None,
        k: int = DEFAULT_K,
        window: int = DEFAULT_WINDOW,
        bins: int = DEFAULT_BINS,
        feature_chars: int = DEFAULT_FEATURE_CHARS,
        ablation_chars: int = DEFAULT_ABLATION_CHARS,
    ) -> None:
        if cell not in QUANTITIES:
            raise ValueError(f"unknown cell type {cell!r}; expected one of {list(QUANTITIES)}")
        quantity = state_quantity(cell) if quantity is None else quantity
        if quantity not in QUANTITIES[cell]:
            known = list(QUANTITIES[cell])
            raise ValueError(f"unknown quantity {quantity!r}; the quantities of a {cell} layer are {known}")
        for name, value, least in (("hidden_size", hidden_size, 1), ("k", k, 1), ("window", window, 1),
                                   ("bins", bins, 2), ("feature_chars", feature_chars, 0),
                                   ("ablation_chars", ablation_chars, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"`{name}` must be an integer >= {least}, got {value!r}")
        self.cell, self.layer_names, self.hidden_size, self.quantity = cell, list(layer_names), hidden_size, quantity
        self.layers = _resolve_layers(self.layer_names, layers)
        self.k, self.window, self.bins = k, window, bins
        self.feature_chars, self.ablation_chars = feature_chars, ablation_chars
        self.start: int | None = None
        self.end = 0
        self._stats: dict[str, _Layer] | None = {
            layer: _Layer(hidden_size, quantity, cell, k, window, bins) for layer in self.layers
        }
        self._sample_ids: list[Tensor] = []
        self._sample_text: list[str] = []
        self.meta: dict[str, Any] = {}
        self._cards: dict[tuple[str, int], dict[str, Any]] | None = None
        self._tensors: dict[str, Tensor] = {}  # the finished contexts' positions, exact values and ids

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        model: CharLSTM,
        corpus: Corpus,
        *,
        layers: Sequence[str | int] | str | int | None = None,
        quantity: str | None = None,
        k: int = DEFAULT_K,
        window: int = DEFAULT_WINDOW,
        bins: int = DEFAULT_BINS,
        feature_chars: int = DEFAULT_FEATURE_CHARS,
        ablation_chars: int = DEFAULT_ABLATION_CHARS,
        features: Sequence[str] | None = None,
        segment_chars: int = DEFAULT_SEGMENT_CHARS,
        shard_chars: int = DEFAULT_SHARD_CHARS,
        prime_chars: int = DEFAULT_PRIME_CHARS,
        on_unknown: str = "error",
        log: Log | None = None,
        trainer: pl.Trainer | None = None,
        **trainer_kwargs: Any,
    ) -> UnitAtlas | None:
        """The finished atlas of ``model`` over ``corpus``: one pass on Lightning's engine, then the samples' work.

        The pass is a :func:`~lstm_interp.analysis.corpus_pass.corpus_pass` over shards of ``shard_chars``, each
        traced from a state warmed on the ``prime_chars`` characters before it: any accelerator, number of
        processes or nodes, with the same result. The samples' work (feature scores, ablations) runs on rank 0.

        Args:
            model: the network.
            corpus: the text itself (a ``str``), or a file path or a list of them (UTF-8, streamed, end to end).
            layers, quantity, k, window, bins, feature_chars, ablation_chars: as for the class.
            features: registered feature names to score (default every registered feature).
            segment_chars: characters traced at a time (memory holds one segment's activations).
            shard_chars, prime_chars: the shards (:mod:`~lstm_interp.analysis.corpus_shards`).
            on_unknown: ``"error"`` or ``"skip"`` for characters outside the vocabulary.
            log: called with progress lines (``print``, say).
            trainer: the Trainer to run the pass on, or its arguments as keywords (``devices=2``, ...).

        Returns:
            The finished atlas on rank 0; ``None`` on the other ranks.

        Raises:
            TypeError: ``model`` is not a CharLSTM.
            ValueError: any bad argument (the class's, an unknown feature, a bad ``segment_chars``), an empty corpus
                or a file that is not UTF-8; all before the pass.
            VocabularyError: characters outside the vocabulary (``on_unknown="error"``), before the pass.
            FileNotFoundError, IsADirectoryError: a missing corpus file, or a folder.
            CorpusPassError: a rank failed during the pass.
        """
        if not isinstance(model, CharLSTM):
            raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
        cfg = model.config
        settings = dict(layers=layers, quantity=quantity, k=k, window=window, bins=bins, feature_chars=feature_chars,
                        ablation_chars=ablation_chars)  # fmt: skip
        empty = functools.partial(cls, cfg.cell, [f"layers.{i}" for i in range(cfg.num_layers)], cfg.hidden_size,
                                  **settings)  # fmt: skip
        atlas = empty()  # checks the settings now, before the pass
        if features is not None:
            if isinstance(features, str) or not all(isinstance(f, str) for f in features):
                raise ValueError(f"`features` must be a list of registered feature names, got {features!r}")
            for name in features:
                get_feature(name)  # an unknown name fails here, listing the registered ones
        if isinstance(segment_chars, bool) or not isinstance(segment_chars, int) or segment_chars < 1:
            raise ValueError(f"`segment_chars` must be a positive integer, got {segment_chars!r}")
        say = log or (lambda line: None)
        runner = pass_trainer(trainer, trainer_kwargs)
        scan = scan_corpus(model, corpus, on_unknown=on_unknown)
        say(f"atlas of {len(atlas.layers)} layer(s) x {cfg.hidden_size} units over {scan.length:,} characters")
        started = time.perf_counter()
        merged = corpus_pass(model, scan, empty, names_filter=atlas.names, shard_chars=shard_chars,
                             prime_chars=prime_chars, segment_chars=segment_chars, trainer=runner)  # fmt: skip
        if runner.global_rank != 0:
            return None
        merged.meta["corpus"] = scan.to_dict()
        merged.meta["seconds"] = {"pass": time.perf_counter() - started}
        merged.meta["shards"] = {"shard_chars": shard_chars, "prime_chars": prime_chars,
                                 "processes": runner.world_size}  # fmt: skip
        say(f"  {merged.end:,} of {scan.length:,} characters ({time.perf_counter() - started:.0f} s)")
        return merged.finish(model, features=features, log=say)

    @property
    def names(self) -> list[str]:
        """The trace names :meth:`update` reads: the quantity and the gates of each layer (a ``names_filter``)."""
        gates = UnitStats(1, self.quantity, self.cell).gate_names
        return [f"{layer}.{q}" for layer in self.layers for q in dict.fromkeys([self.quantity, *gates])]

    def update(self, trace: Trace, start: int) -> UnitAtlas:
        """Add the next segment (its trace, holding :attr:`names`, and its first step in the corpus); returns self.

        Raises:
            ValueError: a finished or loaded atlas, a trace of another architecture or without the names, a segment
                that does not continue the last one.
        """
        stats = self._running()
        if (trace.cell, trace.layer_names) != (self.cell, self.layer_names):
            raise ValueError(f"a trace of a {trace.cell} {trace.layer_names} cannot be added to an atlas of a "
                             f"{self.cell} {self.layer_names}")  # fmt: skip
        missing = [name for name in self.names if name not in trace]
        if missing:
            raise ValueError(f"the trace lacks {missing}; trace with names_filter={self.names}")
        if self.start is not None and start != self.end:
            raise ValueError(f"a segment starting at step {start} does not continue the atlas, ending at {self.end}")
        self.start = start if self.start is None else self.start
        tokens, steps = trace.tokens, trace.num_steps
        for layer, layer_stats in stats.items():
            x = trace[f"{layer}.{self.quantity}"].float()  # (T, H)
            layer_stats.top.update(x, tokens, start)
            layer_stats.bottom.update(x, tokens, start)
            gates = [trace[f"{layer}.{gate}"] for gate in layer_stats.stats.gate_names]
            layer_stats.stats.update(x, *gates)
            room = self.feature_chars - sum(len(part) for part in layer_stats.sample)
            if room > 0:
                layer_stats.sample.append(x[:room].clone())
        room = max(self.feature_chars, self.ablation_chars) - sum(len(part) for part in self._sample_ids)
        if room > 0:
            self._sample_ids.append(tokens[:room].clone())
            self._sample_text.append((trace.text or "")[:room])
        self.end = start + steps
        return self

    def merge(self, other: UnitAtlas) -> UnitAtlas:
        """These statistics followed by ``other``'s (the next part of the corpus): a new atlas, as one pass.

        Raises:
            ValueError: atlases of other settings, finished or loaded ones, or parts that are not consecutive.
        """
        mine, theirs = self._settings(), other._settings()
        if mine != theirs:
            raise ValueError(f"cannot merge an atlas of {theirs} into one of {mine}")
        a, b = self._running(), other._running()
        if other.start is None:
            return copy.deepcopy(self)
        if self.start is None:
            return copy.deepcopy(other)
        if other.start != self.end:
            raise ValueError(f"the atlas to merge starts at step {other.start}, not where this one ends ({self.end})")
        merged = copy.deepcopy(self)
        for layer, out in merged._running().items():
            x, y = a[layer], b[layer]
            out.top, out.bottom, out.stats = x.top.merge(y.top), x.bottom.merge(y.bottom), x.stats.merge(y.stats)
            out.sample = _first(x.sample + y.sample, self.feature_chars)
        keep = max(self.feature_chars, self.ablation_chars)
        merged._sample_ids = _first(self._sample_ids + other._sample_ids, keep)
        merged._sample_text = ["".join(self._sample_text + other._sample_text)[:keep]]
        merged.end = other.end
        return merged

    def finish(self, model: CharLSTM, *, features: Sequence[str] | None = None, log: Log | None = None) -> UnitAtlas:
        """Do the samples' work and make every unit's card (:meth:`card`); returns self, now read-only.

        Args:
            model: the network the statistics were gathered with (its vocabulary decodes the contexts).
            features: registered feature names to score on the feature sample (default every one).
            log: called with progress lines.

        Raises:
            ValueError: nothing added yet, a model of another architecture, or an atlas finished already.
        """
        stats = self._running()
        if self.start is None:
            raise ValueError("nothing was added to this atlas: update it with at least one segment first")
        cfg = model.config
        if (cfg.cell, cfg.num_layers, cfg.hidden_size) != (self.cell, len(self.layer_names), self.hidden_size):
            raise ValueError(f"the model is a {cfg.num_layers} x {cfg.hidden_size} {cfg.cell}; the atlas was made of "
                             f"a {len(self.layer_names)} x {self.hidden_size} {self.cell}")  # fmt: skip
        say = log or (lambda line: None)
        seconds = self.meta.setdefault("seconds", {})
        started = time.perf_counter()
        ids = torch.cat(self._sample_ids) if self._sample_ids else torch.zeros(0, dtype=torch.long)
        text = "".join(self._sample_text)
        n = min(self.feature_chars, len(ids))
        sample = {layer: torch.cat(s.sample)[:n] if s.sample else torch.zeros(0, self.hidden_size)
                  for layer, s in stats.items()}  # fmt: skip
        found = UnitFeatures({}, (), {}, n)
        if n >= 2:
            say(f"scoring features on the first {n:,} characters")
            values = {f"{layer}.{self.quantity}": v for layer, v in sample.items()}
            traced = Trace(values, text=text[:n], tokens=ids[:n], cell=self.cell, num_layers=len(self.layer_names))
            found = unit_features(traced, self.quantity, layers=self.layers, features=features, top=FEATURE_ROWS)
        pinned = {layer: pinned_units(display_values(v, self.quantity)) for layer, v in sample.items()}
        seconds["features"] = time.perf_counter() - started
        started = time.perf_counter()
        m = min(self.ablation_chars, len(ids))
        ablated = ablation_effects(model, ids[:m], self.layers, log=say) if m >= 2 else {}
        seconds["ablation"] = time.perf_counter() - started
        readout = readout_effects(model) if self.layer_names[-1] in self.layers else None
        chars = model._require_vocab().chars
        self._cards = {}
        for layer, layer_stats in stats.items():
            heaps = {"top": layer_stats.top.finished(), "bottom": layer_stats.bottom.finished()}
            for side, heap in heaps.items():
                window_ids, window_values = heap.windows()
                if len(chars) < 1 << 15:  # the ids fit (with -1 for outside the corpus): half the file
                    window_ids = window_ids.to(torch.int16)
                self._tensors |= {f"{layer}.{side}.positions": heap.positions(), f"{layer}.{side}.ids": window_ids,
                                  f"{layer}.{side}.values": window_values}  # fmt: skip
            last = layer == self.layer_names[-1]
            cards = layer_cards(
                layer, heaps["top"], heaps["bottom"], layer_stats.stats, chars, pinned=pinned[layer] if n else None,
                found=found, readout=readout if last else None, ablated=ablated,
            )  # fmt: skip
            self._cards |= {(layer, card["unit"]): card for card in cards}
        steps = self.end - self.start
        self.meta |= atlas_meta(model, self.layer_names, self.layers, self.quantity, steps=steps, k=self.k,
                                window=self.window, bins=self.bins, found=found, ablation_chars=m)  # fmt: skip
        self._stats = None  # the cards hold the results; the running statistics are let go
        return self

    # ------------------------------------------------------------------ results
    def card(self, layer: str, unit: int) -> dict[str, Any]:
        """The JSON-ready card of one unit (what its page and the explorer show).

        Raises:
            ValueError: an atlas not finished, a layer it does not describe, a unit out of range.
        """
        if self._cards is None:
            raise ValueError("the atlas is not finished: call finish(model) after the last update")
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; the atlas describes {self.layers}")
        if isinstance(unit, bool) or not isinstance(unit, int | np.integer) or not 0 <= unit < self.hidden_size:
            raise ValueError(f"`unit` must be an integer 0 .. {self.hidden_size - 1}, got {unit!r}")
        return self._cards[layer, int(unit)]

    def cards(self) -> list[dict[str, Any]]:
        """Every card, layer by layer, unit by unit."""
        return [self.card(layer, unit) for layer in self.layers for unit in range(self.hidden_size)]

    def to_dict(self) -> dict[str, Any]:
        """``atlas.json``'s content: ``format``, ``format_version``, ``meta`` and ``units`` (every card)."""
        return {"format": ATLAS_FORMAT, "format_version": ATLAS_VERSION, "meta": self.meta, "units": self.cards()}

    def matches(self, model: CharLSTM) -> bool:
        """Whether the atlas was made of ``model`` (the same config and weights, by sha256)."""
        made, given = self.meta.get("model") or {}, model_provenance(model)
        return all(made.get(key) == given[key] for key in ("config_sha256", "weights_sha256"))

    def write(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``atlas.json`` and ``contexts.safetensors`` into ``folder`` (a folder being built: see
        :func:`lstm_interp.report.atlas_pages.write_atlas_folder` for the whole, atomic write)."""
        folder = Path(folder)
        cards = self.to_dict()
        atomic_write_text(folder / ATLAS_NAME, json.dumps(cards, allow_nan=False, ensure_ascii=False) + "\n")
        save_file({name: t.contiguous() for name, t in self._tensors.items()}, folder / CONTEXTS_NAME)
        return [folder / ATLAS_NAME, folder / CONTEXTS_NAME]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> UnitAtlas:
        """The finished atlas written in ``folder`` (its cards; checked against the folder's manifest).

        Raises:
            FileNotFoundError: no ``atlas.json`` in ``folder``.
            ValueError: not an atlas of this format, or files that disagree with the manifest (``ManifestError``).
        """
        document = read_atlas_json(folder)
        meta = document["meta"]
        atlas = cls(meta["cell"], meta["layer_names"], meta["hidden_size"], layers=meta["layers"],
                    quantity=meta["quantity"], k=meta["k"], window=meta["window"],
                    bins=meta["histogram"]["bins"])  # fmt: skip
        atlas.meta, atlas._stats = meta, None
        atlas._cards = {(card["layer"], card["unit"]): card for card in document["units"]}
        contexts = Path(folder) / CONTEXTS_NAME
        atlas._tensors = load_file(contexts) if contexts.is_file() else {}
        return atlas

    def __repr__(self) -> str:
        state = "finished" if self._cards is not None else f"steps {self.start}..{self.end}"
        return f"UnitAtlas({self.cell}, layers={self.layers}, {self.quantity}, k={self.k}, {state})"

    # ------------------------------------------------------------------ helpers
    def _running(self) -> dict[str, _Layer]:
        if self._stats is None:
            raise ValueError("this atlas is finished (or loaded): it holds its cards, not its running statistics")
        return self._stats

    def _settings(self) -> tuple[Any, ...]:
        return (self.cell, self.layer_names, self.layers, self.hidden_size, self.quantity, self.k, self.window,
                self.bins, self.feature_chars, self.ablation_chars)  # fmt: skip


def _resolve_layers(names: list[str], layers: Sequence[str | int] | str | int | None) -> list[str]:
    chosen = names if layers is None else [layers] if isinstance(layers, str | int) else list(layers)
    resolved = []
    for layer in chosen:
        if isinstance(layer, int) and not isinstance(layer, bool) and -len(names) <= layer < len(names):
            resolved.append(names[layer])
        elif isinstance(layer, str) and layer in names:
            resolved.append(layer)
        else:
            raise ValueError(f"unknown layer {layer!r}; the model's layers are {names} (or their indices)")
    if not resolved:
        raise ValueError(f"`layers` is empty; the model's layers are {names}")
    return list(dict.fromkeys(resolved))


def _first(parts: list[Tensor], count: int) -> list[Tensor]:
    """The first ``count`` rows of the pieces, as one piece (or none)."""
    return [torch.cat(parts)[:count]] if parts and count > 0 else []
