"""``NGramBaseline``: an :class:`~lstm_interp.ngram.NGramModel` that reads and scores strings, not ids.

The n-gram model counts ids; this class owns the character vocabulary that turns a string into them, so that a
baseline can be fitted on one text and score another character by character, aligned with
:func:`~lstm_interp.comparison.char_log_probs`: entry ``t - 1`` of :meth:`NGramBaseline.char_log_probs` is
``log P_ngram(text[t] | the n-1 characters before it)``, for ``t = 1 … T-1``.

The vocabulary is every character of the training text plus the ``chars`` given to :meth:`NGramBaseline.fit`
(pass the LSTM's vocabulary and the test text's characters): all of them share the smoothed probability mass, so a
character never seen in training still gets a small, finite probability (see :mod:`lstm_interp.ngram.ngram_model`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lstm_interp.comparison._checks import check_text
from lstm_interp.ngram import NGramModel
from lstm_interp.vocab import CharVocab


class NGramBaseline:
    """A character n-gram baseline (interpolated modified Kneser–Ney) with its own character vocabulary.

    Build one with :meth:`fit`.

    Args:
        model: the fitted n-gram model.
        vocab: the characters behind its ids (``vocab.chars[i]`` is id ``i``).

    Raises:
        ValueError: from :meth:`fit`: an empty training text, or an order below 1 or above its length.
        VocabularyError: from :meth:`char_log_probs`: a character outside the vocabulary.

    Example::

        >>> baseline = NGramBaseline.fit("abc" * 100, order=3)
        >>> baseline.char_log_probs("abca").round(3).tolist()  # "b" after "a" (a bigram), "c" after "ab", ...
        [-0.437, -0.005, -0.004]
    """

    def __init__(self, model: NGramModel, vocab: CharVocab) -> None:
        if model.vocab_size != len(vocab):
            raise ValueError(f"the n-gram model has {model.vocab_size} ids but the vocabulary {len(vocab)} characters")
        self.model = model
        self.vocab = vocab

    @classmethod
    def fit(cls, train_text: str, order: int, *, chars: str | Iterable[str] = "") -> NGramBaseline:
        """Fit an order-``order`` model on ``train_text``.

        Args:
            train_text: the training text (the LSTM's training text, for a fair comparison).
            order: n: each character is predicted from the n-1 before it.
            chars: more characters for the vocabulary, besides those of ``train_text`` (the test text's, the
                LSTM's vocabulary): a text to score may only hold vocabulary characters.

        Raises:
            ValueError: an empty ``train_text``, or ``order`` below 1 or larger than ``len(train_text)``.
        """
        if not isinstance(train_text, str):
            raise TypeError(f"`train_text` must be a string, got {type(train_text).__name__}")
        if not train_text:
            raise ValueError("cannot fit an n-gram baseline on an empty training text")
        if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 1:
            raise ValueError(f"`order` must be an integer >= 1, got {order!r}")
        if order > len(train_text):
            raise ValueError(
                f"n larger than the text: n-gram order {order} but the training text has {len(train_text)} "
                f"characters; use an order of at most {len(train_text)}"
            )
        vocab = CharVocab(sorted(set(train_text).union(chars)))
        model = NGramModel.fit(vocab.encode_array(train_text), int(order), len(vocab))
        return cls(model, vocab)

    @property
    def order(self) -> int:
        """n: the model sees the n-1 characters before the one it predicts."""
        return self.model.order

    def __repr__(self) -> str:
        return f"NGramBaseline(order={self.order}, vocab_size={len(self.vocab)})"

    def char_log_probs(self, text: str) -> np.ndarray:
        """``log P(text[t] | the n-1 characters before it)`` for ``t = 1 … T-1`` (nats, float64, all finite).

        The first character only serves as context, as for :func:`~lstm_interp.comparison.char_log_probs`; the
        next n-2 characters see fewer than n-1 characters of context (the chain stops at the order they allow).

        Raises:
            ValueError: a text of fewer than 2 characters.
            VocabularyError: a character outside the vocabulary (pass it in ``chars`` when fitting).
        """
        check_text(text)
        ids = self.vocab.encode_array(text)
        return self.model.log_probs_per_char(ids[1:], context=ids[:1])
