"""``corpus_segments``: :func:`~lstm_interp.tracing.trace_segments` over a corpus of files of any size, streamed.

:func:`~lstm_interp.tracing.trace_segments` takes a text (or ids) held in memory. A corpus given as files is read
here piece by piece, as strict UTF-8 (the pieces of :class:`~lstm_interp.analysis.StateIndex`'s reader), each piece
encoded and traced by ``trace_segments`` with the state carried from the last, so that memory is one piece of text
and one segment's activations whatever the corpus's size, and the segments together are the trace of the whole
corpus (files end to end, as one text).

:func:`scan_corpus` reads the corpus once before: it checks every file exists and is UTF-8, counts the characters
that will be traced, and finds those outside the vocabulary, so that bad input fails (naming the file and the
character) before the long pass; it costs a read of the files, nothing next to tracing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstm_interp.analysis._index_files import Corpus, KnownText, _pieces, corpus_source
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import Trace, trace_segments
from lstm_interp.tracing.trace import NamesFilter

__all__ = ["CorpusScan", "corpus_segments", "scan_corpus"]


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


def corpus_segments(
    model: CharLSTM,
    scan: CorpusScan,
    segment_chars: int,
    *,
    names_filter: NamesFilter = None,
) -> Iterator[tuple[int, Trace]]:
    """Yield ``(start, trace)`` for consecutive segments of the scanned corpus, each continuing the last.

    Characters outside the vocabulary are dropped (the scan refused them already unless it was told to skip them),
    so ``start`` counts the traced characters, ``0 .. scan.length``.
    """
    vocab = model._require_vocab()
    state, offset = None, 0
    for _, piece in _pieces(scan.source):
        ids = vocab.encode(piece, on_unknown="skip")
        if not len(ids):
            continue
        for start, segment in trace_segments(model, ids, segment_chars, names_filter=names_filter, state=state):
            state = segment.final_state
            yield offset + start, segment
        offset += len(ids)
