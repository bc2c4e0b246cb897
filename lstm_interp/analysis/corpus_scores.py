"""``CorpusScores``: :func:`~lstm_interp.find_cells`'s scores over a corpus of any size, merged across shards.

``find_cells`` needs every activation of the text at once (an AUC is a sort). Over a corpus that does not fit, or
that is split across processes, the scores are kept as sums and counts that add up:

- **binary features, AUC**: per unit, how many positions fall in each of ``bins`` equal bins of the displayed value
  (-1..+1: ``tanh(c)`` for a cell, ``2g - 1`` for a gate), inside and outside the feature. The AUC of these counts
  (ties within a bin counted 1/2) is the exact AUC of the values **rounded to the bin width**, ``2 / bins``
  (0.001 at the default 2,048 bins); as a rank statistic of a monotone display, it equals the raw values' AUC up to
  pairs closer than that. ``benchmarks/bench_corpus_pass.py`` measures the difference from ``find_cells``.
- **continuous features, Pearson r**: float64 sums of ``x``, ``x^2``, ``f``, ``f^2`` and ``x f``, exact up to
  float64 rounding;
- **the visible effect** of the ranking rule (:mod:`~lstm_interp.analysis.visible_effect`): the displayed means
  inside and outside (binary), or the displayed slope times the feature's 5-95 percentile spread, from the counts of
  each feature value (continuous).

Rows come out in ``find_cells``'s order (:func:`~lstm_interp.analysis.find_cells.ranking_order`). Controls are not
scored here (a partial score needs the values given the control): score them on a sample with ``find_cells``.

Features are computed on each segment's text with the ``context_chars`` characters before it (a shard's warm-up
characters at a shard's start), so a feature that looks back (a quote opened earlier) sees that much context.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from lstm_interp.analysis._index_files import Corpus
from lstm_interp.analysis.corpus_pass import corpus_pass
from lstm_interp.analysis.corpus_shards import DEFAULT_PRIME_CHARS, DEFAULT_SHARD_CHARS
from lstm_interp.analysis.find_cells import CellTable, _row, ranking_order
from lstm_interp.analysis.visible_effect import MIN_EFFECT
from lstm_interp.features import compute_feature, get_feature
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import Trace, display_values, state_quantity

if TYPE_CHECKING:  # Lightning is imported by the pass itself, when it runs (it takes seconds to import)
    import lightning.pytorch as pl

DEFAULT_BINS = 2048
DEFAULT_CONTEXT_CHARS = DEFAULT_PRIME_CHARS


class CorpusScores:
    """Mergeable ``find_cells`` scores of ``features`` for every unit of ``layers`` (see the module docstring).

    Args:
        chars: the vocabulary, in id order (the traces' ids are decoded to compute the features).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``. layer_names: the model's layers.
        features: registered feature names.
        quantity: the quantity scored (default the state: the cell of an LSTM).
        bins: bins of the displayed value for the AUC counts.
        context_chars: characters before each segment the features see.

    Raises:
        UnknownFeatureError: an unknown feature name. ValueError: no feature, a bad ``bins``.
    """

    def __init__(
        self,
        chars: str,
        cell: str,
        layer_names: Sequence[str],
        features: Sequence[str],
        *,
        quantity: str | None = None,
        bins: int = DEFAULT_BINS,
        context_chars: int = DEFAULT_CONTEXT_CHARS,
    ) -> None:
        if isinstance(features, str) or not features:
            raise ValueError(f"`features` must be a non-empty list of registered feature names, got {features!r}")
        if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 65_536:
            raise ValueError(f"`bins` must be an integer from 2 to 65536, got {bins!r}")
        self.features = {name: get_feature(name) for name in features}
        self.chars, self.cell, self.layer_names = chars, cell, list(layer_names)
        self.quantity = quantity or state_quantity(cell)
        self.bins, self.context_chars = bins, context_chars
        self.start: int | None = None
        self.end = 0
        self._context = ""
        # feature -> layer -> arrays; created at the first update, when the widths are known.
        self.counts: dict[str, dict[str, np.ndarray]] = {}  # binary: (2, H, bins) int64, outside then inside
        self.sums: dict[str, dict[str, np.ndarray]] = {}  # continuous: (6, H) float64
        self.feature_counts: dict[str, Counter[float]] = {name: Counter() for name in features}
        self.feature_sums: dict[str, np.ndarray] = {}  # continuous: (sum f, sum f^2), float64

    @property
    def names(self) -> list[str]:
        """The trace names :meth:`update` reads."""
        return [f"{layer}.{self.quantity}" for layer in self.layer_names]

    def context(self, ids: Tensor) -> None:
        """The characters before the next segment (a shard's warm-up), for features that look back."""
        self._context = "".join(self.chars[i] for i in ids[-self.context_chars :].tolist())

    def update(self, trace: Trace, start: int) -> CorpusScores:
        """Add the next segment's trace (holding :attr:`names`), starting at corpus step ``start``; returns self."""
        text = trace.text if trace.text is not None else "".join(self.chars[i] for i in trace.tokens.tolist())
        window = self._context + text
        for name, feature in self.features.items():
            values = compute_feature(feature, window)[len(self._context) :]
            if feature.kind == "binary":
                labels = np.asarray(values, dtype=bool)
                for layer in self.layer_names:
                    self._add_counts(name, layer, trace[f"{layer}.{self.quantity}"], labels)
            else:
                f = np.asarray(values, dtype=np.float64)
                self.feature_counts[name].update(f.tolist())
                self.feature_sums[name] = self.feature_sums.get(name, np.zeros(2)) + np.array([f.sum(), (f * f).sum()])
                for layer in self.layer_names:
                    self._add_sums(name, layer, trace[f"{layer}.{self.quantity}"], f)
        self._context = window[-self.context_chars :]
        self.start = start if self.start is None else self.start
        self.end = start + trace.num_steps
        return self

    def _add_counts(self, name: str, layer: str, x: Tensor, labels: np.ndarray) -> None:
        shown = display_values(x, self.quantity).numpy()  # (T, H)
        H = shown.shape[1]
        index = np.clip(((shown + 1) * (self.bins / 2)).astype(np.int64), 0, self.bins - 1)
        index += (np.arange(H, dtype=np.int64) * self.bins)[None]
        table = self.counts.setdefault(name, {}).setdefault(layer, np.zeros((2, H, self.bins), np.int64))
        table[1] += np.bincount(index[labels].ravel(), minlength=H * self.bins).reshape(H, self.bins)
        table[0] += np.bincount(index[~labels].ravel(), minlength=H * self.bins).reshape(H, self.bins)

    def _add_sums(self, name: str, layer: str, x: Tensor, f: np.ndarray) -> None:
        raw = x.detach().to(torch.float64).numpy()
        shown = display_values(x, self.quantity).to(torch.float64).numpy()
        sums = self.sums.setdefault(name, {}).setdefault(layer, np.zeros((6, raw.shape[1])))
        sums[0] += raw.sum(0)
        sums[1] += (raw * raw).sum(0)
        sums[2] += f @ raw
        sums[3] += shown.sum(0)
        sums[4] += f @ shown
        sums[5] += len(f)

    def merge(self, other: CorpusScores) -> CorpusScores:
        """These scores followed by ``other``'s (the next part of the corpus): a new accumulator, as one pass.

        Raises:
            ValueError: other settings, or parts that are not consecutive.
        """
        mine = (self.chars, self.cell, self.layer_names, list(self.features), self.quantity, self.bins)
        theirs = (other.chars, other.cell, other.layer_names, list(other.features), other.quantity, other.bins)
        if mine != theirs:
            raise ValueError("cannot merge corpus scores of other settings")
        if other.start is None:
            return copy.deepcopy(self)
        if self.start is None:
            return copy.deepcopy(other)
        if other.start != self.end:
            raise ValueError(f"the scores to merge start at step {other.start}, not where these end ({self.end})")
        merged = copy.deepcopy(self)
        for tables, theirs_tables in ((merged.counts, other.counts), (merged.sums, other.sums)):
            for name, layers in theirs_tables.items():
                for layer, values in layers.items():
                    mine_layers = tables.setdefault(name, {})
                    mine_layers[layer] = mine_layers[layer] + values if layer in mine_layers else values.copy()
        for name, counts in other.feature_counts.items():
            merged.feature_counts[name] = merged.feature_counts[name] + counts
        for name, sums in other.feature_sums.items():
            merged.feature_sums[name] = merged.feature_sums.get(name, np.zeros(2)) + sums
        merged.end = other.end
        merged._context = other._context
        return merged

    def table(self, feature: str, top: int | None = 10, *, min_effect: float = MIN_EFFECT) -> CellTable:
        """The ranked rows of ``feature``, as :func:`~lstm_interp.find_cells` gives them (without controls).

        Raises:
            KeyError: a feature that was not scored. ValueError: a feature constant over the corpus.
        """
        if feature not in self.features:
            raise KeyError(f"{feature!r} was not scored; these were: {list(self.features)}")
        binary = self.features[feature].kind == "binary"
        raws, effects, owners, units = [], [], [], []
        for i, layer in enumerate(self.layer_names):
            raw, effect = self._auc(feature, layer) if binary else self._pearson(feature, layer)
            raws.append(raw)
            effects.append(effect)
            owners.append(np.full(len(raw), i))
            units.append(np.arange(len(raw)))
        raw, effect = np.concatenate(raws), np.concatenate(effects)
        metric = "auc" if binary else "pearson"
        score = np.maximum(raw, 1 - raw) if binary else np.abs(raw)
        order = ranking_order(score, effect, [()] * len(score), min_effect)[:top]
        owner, unit = np.concatenate(owners), np.concatenate(units)
        rows = [_row(self.layer_names[owner[i]], int(unit[i]), feature, metric, raw[i], self.quantity, effect[i],
                     min_effect) for i in order]  # fmt: skip
        title = (f"units of {', '.join(self.layer_names)} whose {self.quantity} tracks {feature!r} ({metric}, over "
                 f"{self.end - (self.start or 0):,} characters)")  # fmt: skip
        return CellTable(tuple(rows), self.quantity, title, self.end - (self.start or 0), ())

    def _auc(self, feature: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        outside, inside = self.counts[feature][layer].astype(np.float64)
        n1, n0 = inside[0].sum(), outside[0].sum()
        if n1 == 0 or n0 == 0:
            raise ValueError(f"feature {feature!r} is constant over the corpus: no AUC")
        below = np.cumsum(outside, axis=1) - outside
        auc = (inside * (below + outside / 2)).sum(axis=1) / (n1 * n0)
        centres = (np.arange(self.bins) + 0.5) * (2 / self.bins) - 1  # the bins' displayed values
        effect = inside @ centres / n1 - outside @ centres / n0
        return auc, effect

    def _pearson(self, feature: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        sx, sxx, sfx, sd, sfd, n = self.sums[feature][layer]
        sf, sff = self.feature_sums[feature]
        n = n[0]
        var_f = sff - sf * sf / n
        if var_f <= 0:
            raise ValueError(f"feature {feature!r} is constant over the corpus: no correlation")
        cov = sfx - sf * sx / n
        var_x = sxx - sx * sx / n
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(var_x > 0, cov / np.sqrt(np.maximum(var_x, 0) * var_f), 0.0)
        values = np.array(sorted(self.feature_counts[feature]))
        weights = np.array([self.feature_counts[feature][v] for v in values], dtype=np.float64)
        cumulative = np.cumsum(weights) / weights.sum()
        p5, p95 = values[np.searchsorted(cumulative, 0.05)], values[np.searchsorted(cumulative, 0.95)]
        spread = p95 - p5 if p95 > p5 else values[-1] - values[0]
        slope = (sfd - sf * sd / n) / var_f
        return np.clip(r, -1, 1), slope * spread


def corpus_scores(
    model: CharLSTM,
    corpus: Corpus,
    features: Sequence[str],
    *,
    quantity: str | None = None,
    bins: int = DEFAULT_BINS,
    shard_chars: int = DEFAULT_SHARD_CHARS,
    prime_chars: int = DEFAULT_PRIME_CHARS,
    on_unknown: str = "error",
    trainer: pl.Trainer | None = None,
    **trainer_kwargs: Any,
) -> CorpusScores | None:
    """Score every unit of ``model`` against ``features`` over a whole corpus, on Lightning's engine.

    Args:
        model: the network. corpus: a text, a file or a list of files (UTF-8, end to end).
        features: registered feature names. quantity, bins: as for :class:`CorpusScores`.
        shard_chars, prime_chars: the shards (:mod:`~lstm_interp.analysis.corpus_shards`); the features see the
            warm-up characters too.
        on_unknown: ``"error"`` or ``"skip"`` for characters outside the vocabulary.
        trainer: the Trainer to run on, or its arguments as keywords (``devices=2``, ...).

    Returns:
        The scores on rank 0 (``.table(feature)`` gives ``find_cells``'s rows); ``None`` on the other ranks.

    Example::

        >>> scores = corpus_scores(model, ["book1.txt", "book2.txt"], ["inside_quotes"], devices=2)  # doctest: +SKIP
        >>> scores.table("inside_quotes", top=5)  # doctest: +SKIP
    """
    cfg = model.config
    make = functools.partial(CorpusScores, model._require_vocab().chars, cfg.cell,
                             [f"layers.{i}" for i in range(cfg.num_layers)], features, quantity=quantity, bins=bins,
                             context_chars=prime_chars)  # fmt: skip
    names = make().names  # checks the features and bins now, before the pass
    return corpus_pass(model, corpus, make, names_filter=names, shard_chars=shard_chars, prime_chars=prime_chars,
                       on_unknown=on_unknown, trainer=trainer, **trainer_kwargs)
