"""Shared test fixtures: the one tiny-model factory every test file builds its networks with.

Tiny means hidden size 8 and a vocabulary of about ten characters (DEVELOPERS.md): fast enough that a test can
train, trace or save a model in milliseconds, large enough to have two layers and every gate.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest
import torch

from lstm_interp.config import CharLSTMConfig
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.vocab import CharVocab

# Index caches of the tests (and of the servers and commands they start) go to a folder of their own, never the
# user's ~/.cache.
if "LSTM_INTERP_CACHE" not in os.environ:
    os.environ["LSTM_INTERP_CACHE"] = tempfile.mkdtemp(prefix="lstm-interp-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LSTM_INTERP_CACHE"], True)

# Ten characters: quotes, braces and a newline, so that the registered features vary on texts made of them.
TINY_VOCAB = 'ab{}"\n .xy'


def tiny_char_lstm(
    vocab: str | CharVocab = TINY_VOCAB,
    *,
    cell: str = "lstm",
    num_layers: int = 2,
    hidden_size: int = 8,
    embedding_size: int = 4,
    seed: int = 0,
    weight_scale: float = 1.0,
    from_text: bool = False,
) -> CharLSTM:
    """A freshly initialised :class:`CharLSTM` in eval mode.

    Args:
        vocab: the characters, in id order (or a :class:`CharVocab`); with ``from_text=True``, a text whose distinct
            characters become the (sorted) vocabulary.
        cell, num_layers, hidden_size, embedding_size: the network.
        seed: ``torch.manual_seed`` before the weights are drawn, so that equal arguments give equal models.
        weight_scale: every parameter is multiplied by it; values above 1 push gates towards saturation and cells far
            from zero, a harder test for exactness.
        from_text: read ``vocab`` as a text (``CharVocab.from_text``) rather than as the vocabulary itself.
    """
    if isinstance(vocab, str):
        vocab = CharVocab.from_text(vocab) if from_text else CharVocab(vocab)
    torch.manual_seed(seed)
    config = CharLSTMConfig(
        vocab_size=len(vocab), cell=cell, num_layers=num_layers, hidden_size=hidden_size, embedding_size=embedding_size
    )
    model = CharLSTM(config, vocab)
    if weight_scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(weight_scale)
    return model.eval()


@pytest.fixture(scope="session")
def make_model() -> Callable[..., CharLSTM]:
    """The factory :func:`tiny_char_lstm`, as a fixture (module-scoped fixtures may use it too)."""
    return tiny_char_lstm


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for the test: tiny models on a shared machine, where a second thread only waits for
    the first (10-100x slower). Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
