"""NGramModel: proper distributions, known losses, agreement with a slow reference, and clear errors."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from lstm_interp.data import EncodedCorpus
from lstm_interp.ngram import NGramModel
from lstm_interp.vocab import VocabularyError


# ---------------------------------------------------------------------------------------------- slow reference
def reference_discounts(counts: list[int]) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from count-of-counts, or KenLM's fallback when they are unusable."""
    n1, n2, n3, n4 = (sum(1 for c in counts if c == r) for r in (1, 2, 3, 4))
    if n1 and n2 and n3:
        y = n1 / (n1 + 2 * n2)
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if all(0 < d[r] <= r + 1 for r in range(3)):
            return d
    return (0.5, 1.0, 1.5)


class ReferenceKneserNey:
    """Interpolated modified Kneser–Ney written with tuples and dictionaries, one character at a time."""

    def __init__(self, train: list[int], order: int, vocab_size: int) -> None:
        self.order, self.vocab_size = order, vocab_size
        grams = {k: Counter(tuple(train[i : i + k]) for i in range(len(train) - k + 1)) for k in range(1, order + 1)}
        self.counts: dict[int, dict[tuple[int, ...], int]] = {order: dict(grams[order])}
        for k in range(1, order):
            before: dict[tuple[int, ...], set[object]] = defaultdict(set)
            for gram in grams[k + 1]:
                before[gram[1:]].add(gram[0])
            before[tuple(train[:k])].add("start of text")
            self.counts[k] = {gram: len(before[gram]) for gram in grams[k]}
        self.discounts = {k: reference_discounts(list(self.counts[k].values())) for k in self.counts}

    def prob(self, history: list[int], char: int) -> float:
        context = tuple(history[-(self.order - 1) :]) if self.order > 1 else ()
        p = 1 / self.vocab_size
        for k in range(1, len(context) + 2):
            h = context[len(context) - (k - 1) :]
            following = {gram[-1]: c for gram, c in self.counts[k].items() if gram[:-1] == h}
            total = sum(following.values())
            if total == 0:
                continue
            d1, d2, d3 = self.discounts[k]

            def discount(c: int, d1: float = d1, d2: float = d2, d3: float = d3) -> float:
                return 0.0 if c == 0 else d1 if c == 1 else d2 if c == 2 else d3

            mass = sum(discount(c) for c in following.values())
            c = following.get(char, 0)
            p = (c - discount(c) + mass * p) / total
        return p

    def log_probs(self, ids: list[int], context: list[int]) -> list[float]:
        full = context + ids
        return [math.log(self.prob(full[: len(context) + t], ids[t])) for t in range(len(ids))]


def random_text(length: int, vocab_size: int, seed: int) -> np.ndarray:
    """Ids with a skewed distribution and some structure, so counts of 1, 2, 3 and 4 all occur."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(3, 1, vocab_size)
    ids = rng.choice(vocab_size, size=length, p=weights / weights.sum())
    ids[7::7] = ids[1:-6:7][: len(ids[7::7])]  # some repetition
    return ids


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("order", range(1, 9))
def test_probabilities_sum_to_one(order):
    vocab_size = 7  # id 6 never occurs in training
    model = NGramModel.fit(random_text(500, 6, seed=order), order, vocab_size)
    rng = np.random.default_rng(100 + order)
    for length in (0, 1, order - 1, order + 3, 12):
        for _ in range(5):
            p = model.probabilities(rng.integers(0, vocab_size, size=max(length, 0)))
            assert p.shape == (vocab_size,)
            assert abs(p.sum() - 1) < 1e-6
            assert np.all(p > 0)


def test_deterministic_text():
    train, test = np.array([0, 1, 2] * 1000), np.array([0, 1, 2] * 50)
    context = train[-30:]
    assert NGramModel.fit(train, 1, 3).score(test, context) == pytest.approx(math.log(3), abs=1e-12)
    for order in (2, 3, 5, 10):
        model = NGramModel.fit(train, order, 3)
        assert model.score(test, context) < 2e-3
        assert model.score(test, context, unit="bits") == pytest.approx(model.score(test, context) / math.log(2))


def test_unigram_is_the_smoothed_unigram():
    # Counts 1, 1, 2, 3, 4 and 10; id 6 is in the vocabulary but never in the text.
    text = np.repeat(np.arange(6), [1, 1, 2, 3, 4, 10])
    model = NGramModel.fit(np.random.default_rng(0).permutation(text), 1, 7)
    counts = np.bincount(text, minlength=7).astype(float)
    n1, n2, n3, n4 = 2, 1, 1, 1
    y = n1 / (n1 + 2 * n2)
    d1, d2, d3 = 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
    np.testing.assert_allclose(model.discounts, [[d1, d2, d3]])
    assert model.discounts_estimated.tolist() == [True]
    discount = np.select([counts == 0, counts == 1, counts == 2], [0, d1, d2], d3)
    gamma = (d1 * n1 + d2 * n2 + d3 * 3) / len(text)  # three ids occur 3 or more times
    expected = (counts - discount) / len(text) + gamma / 7
    np.testing.assert_allclose(model.probabilities([]), expected, rtol=1e-12)
    np.testing.assert_allclose(model.probabilities([3, 4, 5]), expected, rtol=1e-12)  # context is ignored
    assert model.log_prob([], 6) == pytest.approx(math.log(gamma / 7))


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_reference(order):
    vocab_size = 6  # id 5 only occurs in the test text
    train = random_text(300, 5, seed=1)
    test = np.concatenate([random_text(60, 5, seed=2), [5, 0, 5]])
    model, reference = NGramModel.fit(train, order, vocab_size), ReferenceKneserNey(train.tolist(), order, vocab_size)
    for k in range(order):
        np.testing.assert_allclose(model.discounts[k], reference.discounts[k + 1], rtol=0, atol=1e-12)
    for context in ([], train[-5:].tolist()):
        expected = reference.log_probs(test.tolist(), context)
        np.testing.assert_allclose(model.log_probs_per_char(test, context or None), expected, rtol=0, atol=1e-9)
        assert model.score(test, context or None) == pytest.approx(-np.mean(expected), abs=1e-9)
    for history in ([4, 1, 0, 2], [3], []):  # longer than, and (for order 4) shorter than, the n-1 used
        expected_p = [reference.prob(history, w) for w in range(vocab_size)]
        np.testing.assert_allclose(model.probabilities(history), expected_p, rtol=0, atol=1e-12)


def test_reference_covers_estimated_and_fallback_discounts():
    estimated = NGramModel.fit(random_text(300, 5, seed=1), 4, 6).discounts_estimated
    assert estimated.any() and not estimated.all()


def test_per_position_apis_agree():
    train, test = random_text(400, 5, seed=3), random_text(40, 5, seed=4)
    model = NGramModel.fit(train, 3, 5)
    context = train[-10:]
    log_probs = model.log_probs_per_char(test, context)
    full = np.concatenate([context, test]).tolist()
    for t in (0, 1, 2, 17, 39):
        assert log_probs[t] == pytest.approx(model.log_prob(full[: len(context) + t], int(test[t])), abs=1e-12)
    for char in range(5):
        per_position = model.log_probs_of(char, test, context)
        assert per_position[17] == pytest.approx(math.log(model.probabilities(full[: len(context) + 17])[char]))
        np.testing.assert_allclose(per_position[test == char], log_probs[test == char])
    assert model.log_probs_per_char(test[:0]).shape == (0,)


def test_fits_an_encoded_corpus_split(tmp_path):
    corpus = EncodedCorpus.prepare(text="the cat sat on the mat.\n" * 200, cache_dir=tmp_path)
    train, _, test = corpus.split((0.9, 0.05, 0.05))
    model = NGramModel.fit(train, 6, len(corpus.vocab))
    assert model.num_ngrams[0] == len(set(corpus.text()))
    assert model.score(test, train[-5:]) < 0.05
    assert model.nbytes > 0 and "order=6" in repr(model)


def test_errors():
    ids = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"`order` must be an integer >= 1, got 0"):
        NGramModel.fit(ids, 0, 3)
    with pytest.raises(ValueError, match=r"n larger than the text: order 5 .* has 4 characters"):
        NGramModel.fit(ids, 5, 3)
    with pytest.raises(ValueError, match="empty text"):
        NGramModel.fit(np.array([], dtype=np.int64), 1, 3)
    with pytest.raises(ValueError, match="`vocab_size` must be an integer >= 1, got 0"):
        NGramModel.fit(ids, 1, 0)
    with pytest.raises(VocabularyError, match=r"id 3 \(at position 1\), outside the vocabulary \[0, 3\)"):
        NGramModel.fit(np.array([0, 3, 1]), 2, 3)
    with pytest.raises(VocabularyError, match=r"id -1"):
        NGramModel.fit(np.array([0, -1, 1]), 2, 3)
    with pytest.raises(TypeError, match="integer ids, got dtype float64"):
        NGramModel.fit(np.array([0.0, 1.0]), 1, 3)
    with pytest.raises(ValueError, match="1-D"):
        NGramModel.fit(np.zeros((2, 2), dtype=int), 1, 3)
    model = NGramModel.fit(ids, 2, 3)
    with pytest.raises(VocabularyError, match=r"`ids` holds id 7"):
        model.score([0, 7])
    with pytest.raises(VocabularyError, match=r"`context` holds id 9"):
        model.probabilities([9])
    with pytest.raises(VocabularyError, match=r"`next_id` holds id 3"):
        model.log_prob([0], 3)
    with pytest.raises(ValueError, match="empty sequence"):
        model.score([])
    with pytest.raises(ValueError, match="`unit` must be 'nats' or 'bits', got 'bytes'"):
        model.score([0], unit="bytes")  # type: ignore[arg-type]


def test_long_sequence_equals_its_pieces():
    # Past 4096 queries the look-ups sort them first; scoring in pieces, each with its context, must not differ.
    train, test = random_text(3000, 5, seed=5), random_text(6000, 5, seed=6)
    model = NGramModel.fit(train, 5, 5)
    whole = model.log_probs_per_char(test, train[-4:])
    full = np.concatenate([train[-4:], test])
    pieces = [model.log_probs_per_char(test[i : i + 1000], full[i : i + 4]) for i in range(0, len(test), 1000)]
    np.testing.assert_allclose(whole, np.concatenate(pieces), rtol=0, atol=1e-12)
