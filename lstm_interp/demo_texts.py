"""``demo_texts``: the demo's three texts: what it trains on, the probe its monitor records, the held-out prose.

- :func:`demo_data`: the bundled War and Peace as a :class:`~lstm_interp.data.CharDataModule`, the whole book or only
  its paragraphs with dialogue, validation always the book's last 10%;
- :func:`probe_text`: the stretch of the first chapters where quotations open and close most often;
- :func:`held_out_text`: the start of the validation part, which the demo's closing findings are scored on.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from lstm_interp.data import CharDataModule
from lstm_interp.features import compute_feature

PROBE_CHARS = 800
# Where the probe is looked for: the book's first chapters (the opening is one long quotation, a poor probe).
PROBE_SEARCH_CHARS = 200_000
# Held-out prose the demo's closing findings are scored on: this many characters of the validation part.
HELD_OUT_CHARS = 50_000


def demo_data(
    train_on: str, *, batch_size: int, seq_len: int, stateful: bool, cache_dir: str | os.PathLike | None
) -> CharDataModule:
    """The demo's data: the whole book (``"book"``), or only its paragraphs with dialogue (``"dialogue"``).

    Validation and test are the book's last 10% either way, so that losses and held-out scores stay comparable.
    """
    cache = None if cache_dir is None else str(cache_dir)
    if train_on == "book":
        return CharDataModule(corpus="war_and_peace", batch_size=batch_size, seq_len=seq_len, stateful=stateful,
                              cache_dir=cache)
    book = CharDataModule(corpus="war_and_peace", cache_dir=cache)
    book.prepare_data()
    book.setup("fit")
    text = book.corpus.text()
    held_out = math.floor(0.9 * len(text))
    train = "\n\n".join(p for p in text[:held_out].split("\n\n") if '"' in p) + "\n\n"
    fraction = len(train) / (len(train) + len(text) - held_out)
    rest = (1 - fraction) / 2
    return CharDataModule(text=train + text[held_out:], vocab=book.vocab, split=(fraction, rest, 1 - fraction - rest),
                          batch_size=batch_size, seq_len=seq_len, stateful=stateful, cache_dir=cache)


def held_out_text(data: CharDataModule, length: int = HELD_OUT_CHARS) -> str:
    """``length`` characters of the validation part of the demo's corpus, from its first paragraph start."""
    n_train, n_val = (len(part) for part in data.corpus.split(data.split)[:2])
    part = data.corpus.text(n_train, n_train + n_val)
    start = part.find("\n\n") + 2 if "\n\n" in part[: len(part) // 2] else 0
    return part[start : start + length]


def probe_text(text: str, length: int = PROBE_CHARS) -> str:
    """The ``length`` characters of ``text``, from a paragraph start, where quotations open and close most often.

    A quote cell is visible only where quotes switch on and off, so the probe is the stretch with the most
    ``inside_quotes`` transitions. It starts at a paragraph (after a blank line, which no quote runs across), so
    the probe's own feature values, computed from its first character, are the book's.
    """
    values = compute_feature("inside_quotes", text)
    changes = np.concatenate([[0], np.cumsum(values[1:] != values[:-1])])  # changes[i]: transitions up to step i
    starts = np.array([0, *(m.end() for m in re.finditer("\n\n", text))])
    starts = starts[starts + length <= len(text)]
    if len(starts) == 0:
        return text[:length]
    inside = changes[starts + length - 1] - changes[starts]
    best = int(starts[int(np.argmax(inside))])  # the first of the busiest
    return text[best : best + length]
