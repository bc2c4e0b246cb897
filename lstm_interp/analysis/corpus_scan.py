"""``scan_corpus``: read a corpus (a text, a file or a list of files) once, before any pass traces it.

It checks every file exists and is UTF-8 (read piece by piece as strict UTF-8, by the pieces of
:class:`~lstm_interp.analysis.StateIndex`'s reader), counts the characters that will be traced and finds those
outside the vocabulary, so that bad input fails (naming the file and the character) before the long pass; it costs a
read of the files, nothing next to tracing them. The :class:`CorpusScan` it returns is what
:func:`~lstm_interp.analysis.corpus_pass.corpus_pass` shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstm_interp.analysis._index_files import Corpus, KnownText, corpus_source
from lstm_interp.models.char_lstm import CharLSTM

__all__ = ["CorpusScan", "scan_corpus"]


@dataclass(frozen=True)
class CorpusScan:
    """What a corpus holds, read before it is traced.

    Args:
        source: the text itself, or the files in order.
        length: characters that will be traced (those in the vocabulary, with ``on_unknown="skip"``).
        sha256: of the traced text's UTF-8 bytes (as :func:`~lstm_interp.manifest.text_provenance` hashes a text).
        skipped: character -> how many were dropped (``on_unknown="skip"``).
    """

    source: str | list[Path]
    length: int
    sha256: str
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready provenance: ``length``, ``sha256``, ``files`` (``None`` for a text) and ``skipped``."""
        files = None if isinstance(self.source, str) else [str(f) for f in self.source]
        return {"length": self.length, "sha256": self.sha256, "files": files, "skipped": self.skipped}


def scan_corpus(model: CharLSTM, corpus: Corpus, *, on_unknown: str = "error") -> CorpusScan:
    """Read ``corpus`` (a text, a file or a list of files) once, without tracing it: its length and hash.

    Raises:
        FileNotFoundError, IsADirectoryError: a missing file, or a folder.
        ValueError: an empty text, a file that is not UTF-8 (naming the byte), no character of the vocabulary, a
            bad ``on_unknown``.
        VocabularyError: characters outside the vocabulary with ``on_unknown="error"`` (each named with where it
            first occurs).
    """
    if on_unknown not in ("error", "skip"):
        raise ValueError(f"`on_unknown` must be 'error' or 'skip', got {on_unknown!r}")
    known = KnownText(model._require_vocab())
    source = corpus_source(corpus)
    for _ in known.pieces(source):
        pass
    known.check(on_unknown, recorded="", task="trace")
    return CorpusScan(source, known.length, known.digest.hexdigest(), dict(known.skipped.most_common()))
