"""``cached_index``: a state index kept on disk, found again by what it was built from, never by name alone.

Building the index of a corpus traces all of it (minutes for a megabyte on a CPU); opening a built one reads its
header and maps its files (well under a second). So the live explorer and ``lstm-interp index MODEL CORPUS`` keep
indexes in the user's cache folder, one entry per model, corpus and threshold:

- where: ``$LSTM_INTERP_CACHE/indexes``, else ``$XDG_CACHE_HOME/lstm_interp/indexes``, else
  ``~/.cache/lstm_interp/indexes``;
- the key: the sha256 of the model's weights and config, of the indexed text (as :func:`scan_corpus` reads it),
  the threshold, the indexed names and the shard lengths; the entry's folder is named after it;
- an entry is written whole (:meth:`StateIndex.build` builds beside it and swaps it in), so a build killed half-way
  leaves no entry;
- an entry is trusted only when its own header says it is what was asked for (the model's weights and config, the
  text's sha256 and length, the threshold, names and shards, and the file sizes :meth:`StateIndex.open` checks): a
  stale or foreign entry (edited, copied from elsewhere, of an older format) is rebuilt in place.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lstm_interp.analysis._index_files import Corpus, index_names
from lstm_interp.analysis.corpus_scan import CorpusScan, scan_corpus
from lstm_interp.analysis.corpus_shards import DEFAULT_PRIME_CHARS, DEFAULT_SHARD_CHARS
from lstm_interp.analysis.state_index import StateIndex
from lstm_interp.manifest import model_provenance
from lstm_interp.models.char_lstm import CharLSTM

Progress = Callable[[int, int], None]


def cache_root() -> Path:
    """The folder cached indexes live in (see the module docstring)."""
    if os.environ.get("LSTM_INTERP_CACHE"):
        return Path(os.environ["LSTM_INTERP_CACHE"]) / "indexes"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lstm_interp" / "indexes"


def index_key(
    model: CharLSTM, scan: CorpusScan, threshold: float, names: Sequence[str], shards: dict[str, int]
) -> dict[str, Any]:
    """What an index is built from, as its cache entry records it."""
    provenance = model_provenance(model)
    return {"weights_sha256": provenance["weights_sha256"], "config_sha256": provenance.get("config_sha256"),
            "text_sha256": scan.sha256, "text_length": scan.length, "threshold": float(threshold),
            "names": list(names), "shards": dict(shards)}  # fmt: skip


def cached_index(
    model: CharLSTM,
    corpus: Corpus,
    *,
    threshold: float = 0.3,
    names: str | Sequence[str] | None = None,
    on_unknown: str = "skip",
    shard_chars: int = DEFAULT_SHARD_CHARS,
    prime_chars: int = DEFAULT_PRIME_CHARS,
    root: str | os.PathLike | None = None,
    progress: Progress | None = None,
    **trainer_kwargs: Any,
) -> StateIndex | None:
    """The index of ``corpus`` at ``threshold``: opened from the cache when an entry matches, else built into it.

    Args:
        model, corpus, threshold, names, on_unknown, shard_chars, prime_chars: as for :meth:`StateIndex.build`.
        root: the cache folder (default :func:`cache_root`).
        progress: called with (characters traced, characters in all) while an entry is built.
        trainer_kwargs: the Trainer's arguments for a build (``devices=2``, ...).

    Returns:
        The index (on rank 0 of a multi-process build; ``None`` on the others).

    Raises:
        As :meth:`StateIndex.build`, before any work.
    """
    entry, key, scan = _entry(model, corpus, threshold, names, on_unknown, shard_chars, prime_chars, root)
    found = open_entry(entry, key)
    if found is not None:
        return found
    return StateIndex.build(model, scan, entry, threshold=threshold, names=key["names"], shard_chars=shard_chars,
                            prime_chars=prime_chars, on_unknown=on_unknown, overwrite=True, progress=progress,
                            **trainer_kwargs)  # fmt: skip


def find_cached_index(
    model: CharLSTM,
    corpus: Corpus,
    *,
    threshold: float = 0.3,
    names: str | Sequence[str] | None = None,
    on_unknown: str = "skip",
    shard_chars: int = DEFAULT_SHARD_CHARS,
    prime_chars: int = DEFAULT_PRIME_CHARS,
    root: str | os.PathLike | None = None,
) -> StateIndex | None:
    """The cached index of ``corpus`` at ``threshold`` if the cache holds a matching entry, else ``None`` (nothing is
    built). It reads the corpus once, to hash it."""
    entry, key, _ = _entry(model, corpus, threshold, names, on_unknown, shard_chars, prime_chars, root)
    return open_entry(entry, key)


def _entry(
    model: CharLSTM,
    corpus: Corpus,
    threshold: float,
    names: str | Sequence[str] | None,
    on_unknown: str,
    shard_chars: int,
    prime_chars: int,
    root: str | os.PathLike | None,
) -> tuple[Path, dict[str, Any], CorpusScan]:
    cfg = model.config
    chosen = index_names(cfg.cell, cfg.num_layers, names)
    scan = scan_corpus(model, corpus, on_unknown=on_unknown)
    shards = {"shard_chars": -(-shard_chars // 8) * 8, "prime_chars": prime_chars}
    key = index_key(model, scan, threshold, chosen, shards)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return (Path(root) if root is not None else cache_root()) / digest, key, scan


def open_entry(entry: Path, key: dict[str, Any]) -> StateIndex | None:
    """The index at ``entry`` if its header says it was built from ``key``; ``None`` if there is none, or it is
    stale, foreign or broken (then it is rebuilt by the caller)."""
    if not (entry / "index.json").is_file():
        return None
    try:
        index = StateIndex.open(entry)
        header = json.loads((entry / "index.json").read_text(encoding="utf-8"))
        model, text = header.get("model", {}), header.get("text", {})
        found = {"weights_sha256": model.get("weights_sha256"), "config_sha256": model.get("config_sha256"),
                 "text_sha256": text.get("sha256"), "text_length": text.get("length"),
                 "threshold": float(header.get("threshold", "nan")), "names": header.get("names"),
                 "shards": header.get("shards")}  # fmt: skip
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return index if found == key else None
