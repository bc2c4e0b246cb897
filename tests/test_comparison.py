"""lstm_interp.comparison: the LSTM against n-gram baselines by character class, closing brace and error category.

Known answers throughout: probabilities chosen by hand, a unigram Kneser–Ney model worked out on paper, brace
distances counted on a hand-written string, and an error breakdown whose every category is constructed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pictures import assert_picture

from lstm_interp import CharLSTM, trace
from lstm_interp.comparison import (
    CHAR_CLASSES,
    NGramBaseline,
    NoMatchedBracesError,
    brace_study,
    char_class,
    char_log_probs,
    class_loss,
    error_breakdown,
)
from lstm_interp.plots import plot_brace_study, plot_class_loss, plot_error_breakdown, save_figure
from lstm_interp.vocab import VocabularyError

CODE = 'int f(x) {\n  if (x) { return "}"; }\n  y = {1, 2};\n}\n' * 6


@pytest.fixture(scope="module")
def model(make_model) -> CharLSTM:
    return make_model(CODE, from_text=True)


# ---------------------------------------------------------------------------------------------- character classes
@pytest.mark.parametrize(
    ("chars", "expected"),
    [
        ("\n\r\u2028", "newline"),
        (" \t\u00a0", "whitespace"),
        ("azéß", "lowercase"),
        ("AZÉǅ", "uppercase"),
        ("09٣", "digit"),
        ("\"'`“”‘’«»„", "quote"),
        ("()[]{}", "bracket"),
        (".,;:!?-_*/#%&@\\+=<>|~^$", "punctuation"),
        ("中\u0301\x00", "other"),
    ],
)
def test_char_classes(chars, expected):
    assert {c: char_class(c) for c in chars} == dict.fromkeys(chars, expected)
    assert expected in CHAR_CLASSES


def test_char_class_rejects_strings():
    with pytest.raises(ValueError, match="single character, got 'ab'"):
        char_class("ab")


# ---------------------------------------------------------------------------------------------- log-probabilities
def test_char_log_probs_match_the_model_and_do_not_depend_on_segments(model):
    ids = model.vocab.encode(CODE)
    with torch.no_grad():
        logits, _ = model(ids[None])
    expected = torch.log_softmax(logits[0, :-1].float(), dim=-1).gather(1, ids[1:, None]).squeeze(1).numpy()
    whole = char_log_probs(model, CODE)
    assert whole.dtype == np.float32 and whole.shape == (len(CODE) - 1,)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    np.testing.assert_allclose(char_log_probs(model, CODE, segment_chars=7), whole, atol=1e-5)
    np.testing.assert_array_equal(char_log_probs(trace(model, CODE)), whole)


def test_char_log_probs_bad_input(model):
    with pytest.raises(ValueError, match=r"at least 2 characters.*got 1: 'i'"):
        char_log_probs(model, "i")
    with pytest.raises(VocabularyError, match="'Q'"):
        char_log_probs(model, "iQ")
    with pytest.raises(ValueError, match="no 'log_probs'"):
        char_log_probs(trace(model, CODE, names_filter="layers.*.cell"))
    with pytest.raises(ValueError, match="`segment_chars` must be a positive integer, got 0"):
        char_log_probs(model, CODE, segment_chars=0)


def test_unigram_baseline_by_hand():
    # Order 1 on "aab": counts a=2, b=1; count-of-counts n1=n2=1, n3=0, so the fallback discounts D1=0.5, D2=1.
    # gamma = (0.5 * 1 + 1 * 1) / 3 = 1/2; P(a) = (2 - 1)/3 + 1/2 * 1/V, P(b) = (1 - 0.5)/3 + 1/2 * 1/V.
    two = NGramBaseline.fit("aab", order=1)
    np.testing.assert_allclose(np.exp(two.char_log_probs("aba")), [5 / 12, 7 / 12])
    three = NGramBaseline.fit("aab", order=1, chars="c")  # V = 3: the unseen "c" gets gamma / V
    np.testing.assert_allclose(np.exp(three.char_log_probs("abca")), [1 / 3, 1 / 6, 1 / 2])
    assert three.order == 1 and three.vocab.chars == "abc"


def test_baseline_bad_input():
    expected = "n larger than the text: n-gram order 5 but the training text has 3 characters"
    with pytest.raises(ValueError, match=expected):
        NGramBaseline.fit("abc", order=5)
    with pytest.raises(ValueError, match="empty training text"):
        NGramBaseline.fit("", order=1)
    with pytest.raises(ValueError, match="`order` must be an integer >= 1, got 0"):
        NGramBaseline.fit("abc", order=0)
    with pytest.raises(VocabularyError, match="'z'"):
        NGramBaseline.fit("abc", order=2).char_log_probs("az")


# ---------------------------------------------------------------------------------------------- class loss
def test_class_loss_known_answer():
    text = "Ab 1\n"  # scored: "b" lowercase, " " whitespace, "1" digit, "\n" newline
    lstm = np.log([0.5, 0.25, 0.125, 1.0])
    ngram = np.log([0.25, 0.25, 0.5, 0.5])
    result = class_loss(text, lstm, ngram, ngram_order=3)
    assert [row.name for row in result.rows] == list(CHAR_CLASSES)
    assert result["lowercase"].count == 1
    assert result["lowercase"].lstm_loss == pytest.approx(math.log(2))
    assert result["lowercase"].difference == pytest.approx(math.log(2) - math.log(4))
    assert result["digit"].difference == pytest.approx(math.log(8) - math.log(2))
    assert result["newline"].lstm_loss == pytest.approx(0.0)
    assert result["uppercase"].count == 0 and math.isnan(result["uppercase"].lstm_loss)  # "A" is never scored
    data = result.to_dict()
    assert data["classes"][CHAR_CLASSES.index("uppercase")]["lstm_loss"] is None
    assert data["ngram_order"] == 3 and "| digit | 1 |" in result.to_markdown()


def test_class_split_sums_back_to_the_total(model, tmp_path):
    baseline = NGramBaseline.fit(CODE[:150], order=4, chars=model.vocab.chars)
    lstm, ngram = char_log_probs(model, CODE), baseline.char_log_probs(CODE)
    result = class_loss(CODE, lstm, ngram)
    assert sum(row.count for row in result.rows) == len(CODE) - 1 == result.num_chars
    present = [row for row in result.rows if row.count]
    assert sum(row.count * row.lstm_loss for row in present) == pytest.approx(-lstm.astype(np.float64).sum())
    assert sum(row.count * row.ngram_loss for row in present) == pytest.approx(-ngram.sum())
    assert sum(row.share for row in present) == pytest.approx(1.0)
    assert result.lstm_loss == pytest.approx(-lstm.mean(), rel=1e-6)
    assert {row.name for row in present} >= {"lowercase", "bracket", "quote", "newline", "whitespace", "digit"}
    assert save_figure(plot_class_loss(result), tmp_path / "classes.png").stat().st_size > 0
    assert_picture(tmp_path / "classes.png", min_width=300, min_height=200)


@pytest.mark.parametrize("fn", [class_loss, brace_study])
def test_log_probs_of_the_wrong_length(fn):
    expected = r"`lstm_log_probs` has shape \(3,\) but the text has 7 characters; expected \(6,\)"
    with pytest.raises(ValueError, match=expected):
        fn("{ab}{}}", np.zeros(3), np.zeros(6))
    with pytest.raises(ValueError, match="finite log-probabilities <= 0; entry 2 is nan"):
        fn("{ab}{}}", np.zeros(6), [0, 0, math.nan, 0, 0, 0])


# ---------------------------------------------------------------------------------------------- closing braces
def test_brace_matching_on_a_hand_written_string():
    text = "a{b{c}d{}e}f}{"
    #       0123456789...: pairs (3, 5), (7, 8), (1, 10); the "}" at 12 is unmatched, the "{" at 13 unclosed
    lstm = np.log(np.linspace(0.05, 0.95, len(text) - 1))
    ngram = np.log(np.full(len(text) - 1, 0.5))
    study = brace_study(text, lstm, ngram, bin_width=5, max_distance=10, ngram_order=2)
    assert study.positions.tolist() == [5, 8, 10]
    assert study.distances.tolist() == [2, 1, 9]
    assert (study.unmatched_closing, study.unclosed_opening) == (1, 1)
    np.testing.assert_allclose(study.lstm_probabilities, np.exp(lstm[[4, 7, 9]]))
    assert [(b.label, b.count) for b in study.bins] == [("1-5", 2), ("6-10", 1), (">10", 0)]
    assert study.bins[0].lstm_probability == pytest.approx(np.exp(lstm[[4, 7]]).mean())
    assert study.bins[1].ngram_probability == pytest.approx(0.5)
    assert math.isnan(study.bins[2].lstm_probability)
    data = study.to_dict()
    assert data["bins"][2]["lstm_probability"] is None and data["num_matched"] == 3
    assert data["braces"][2] == {
        "position": 10,
        "distance": 9,
        "lstm_probability": pytest.approx(np.exp(lstm[9])),
        "ngram_probability": pytest.approx(0.5),
    }


def test_brace_study_with_real_models(model, tmp_path):
    baseline = NGramBaseline.fit(CODE[:200], order=3, chars=model.vocab.chars)
    study = brace_study(CODE, char_log_probs(model, CODE), baseline.char_log_probs(CODE), ngram_order=3)
    # Per copy three pairs: the "}" inside the string literal closes the if's "{" (every brace counts), so the
    # function's "{" closes at the if's "}", and the copy's last "}" is unmatched.
    assert len(study) == 3 * 6 and study.unmatched_closing == 6
    assert ((study.lstm_probabilities > 0) & (study.lstm_probabilities <= 1)).all()
    assert sum(b.count for b in study.bins) == len(study)
    assert save_figure(plot_brace_study(study), tmp_path / "braces.png").stat().st_size > 0
    assert_picture(tmp_path / "braces.png", min_width=300, min_height=200)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no braces here", r"has 0 '\{' and 0 '\}' \(no braces at all\)"),
        ("a}b{c", r"has 1 '\{' and 1 '\}', and none match"),
    ],
)
def test_brace_study_without_matched_braces(text, message):
    zeros = np.zeros(len(text) - 1)
    with pytest.raises(NoMatchedBracesError, match=message):
        brace_study(text, zeros, zeros)
    with pytest.raises(ValueError, match="`bin_width` must be a positive integer, got 0"):
        brace_study("{}", [0.0], [0.0], bin_width=0)


# ---------------------------------------------------------------------------------------------- error breakdown
TRAIN = "the cat sat on the mat. the cat ran. "
TEXT = "the dog saw the dog. Hi, cat!"
#       0123456789012345678901234567 8
ERRORS = {
    1: 0.1,  # "h" of "the": the order-1 oracle gets it right                 -> ngram
    13: 0.1,  # "h" of the 2nd "the": memory would explain it, but order 2 wins -> ngram
    17: 0.1,  # "o" of the 2nd "dog": "dog" occurs 12 characters before        -> memory_100
    18: 0.2,  # "g" of the 2nd "dog"                                            -> memory_100
    5: 0.1,  # "o" of the 1st "dog": never in training                         -> rare_words
    16: 0.1,  # "d" of the 2nd "dog": first letter, so no memory; rare         -> rare_words
    10: 0.1,  # "w" of "saw" (unseen in training)                              -> rare_words
    22: 0.1,  # "i" of "Hi" (unseen)                                            -> rare_words
    12: 0.1,  # "t" of the 2nd "the" after a space; "the" is common            -> word_model
    25: 0.1,  # "c" of "cat" after a space                                     -> word_model
    23: 0.1,  # ","                                                             -> punctuation
    26: 0.35,  # "a" of "cat": common word, not seen earlier in the text        -> boost
}


def breakdown_inputs() -> tuple[np.ndarray, dict[int, np.ndarray]]:
    p = np.full(len(TEXT) - 1, 0.9)
    p[14 - 1] = 0.5  # exactly the threshold: no error
    for t, value in ERRORS.items():
        p[t - 1] = value
    first, second = np.full(len(TEXT) - 1, 0.3), np.full(len(TEXT) - 1, 0.3)
    first[1 - 1] = 0.9
    second[13 - 1] = 0.5  # >= threshold counts as right
    return np.log(p), {1: np.log(first), 2: np.log(second)}


def test_error_breakdown_on_a_hand_built_example(tmp_path):
    lstm, oracles = breakdown_inputs()
    result = error_breakdown(TEXT, lstm, ngrams=oracles, train_text=TRAIN, memory_windows=(5, 100), rare_max_count=1)
    counts = {c.name: c.count for c in result.categories}
    assert counts == {
        "ngram": 2,
        "memory_5": 0,
        "memory_100": 2,
        "rare_words": 4,
        "word_model": 2,
        "punctuation": 1,
        "boost": 1,
    }
    assert result.num_errors == len(ERRORS) == sum(counts.values())
    assert result.num_chars == len(TEXT) - 1
    assert result["rare_words"].fraction == pytest.approx(4 / 12)
    names = [c.name for c in result.categories]
    assigned = {t: names[result.assignments[t - 1]] for t in ERRORS}
    assert assigned[13] == "ngram" and assigned[16] == "rare_words" and assigned[26] == "boost"
    assert (result.assignments == -1).sum() == len(TEXT) - 1 - len(ERRORS)
    assert [n for _, _, n in result.boost_histogram] == [0, 0, 0, 1, 0]  # 0.35 lies in [0.3, 0.4)
    data = result.to_dict()
    assert data["error_definition"] == "P_LSTM(text[t] | text[:t]) < 0.5" and data["oracle_orders"] == [1, 2]
    assert save_figure(plot_error_breakdown(result), tmp_path / "errors.png").stat().st_size > 0
    assert_picture(tmp_path / "errors.png", min_width=300, min_height=200)


def test_rare_words_threshold_and_windows_change_the_assignment():
    lstm, oracles = breakdown_inputs()
    # Every word of the text now counts as rare (at most 3 occurrences): "the" errors move there from word_model
    result = error_breakdown(TEXT, lstm, ngrams=oracles, train_text=TRAIN, memory_windows=(), rare_max_count=3)
    counts = {c.name: c.count for c in result.categories}
    assert "memory_100" not in counts
    assert counts["rare_words"] == 4 + 2 + 2 + 1  # + both memory errors, "t" of "the", "c" and "a" of "cat"
    assert counts["word_model"] == 0 and counts["boost"] == 0


def test_error_breakdown_with_fitted_oracles(model):
    oracles = [NGramBaseline.fit(CODE, order=k, chars=model.vocab.chars) for k in (1, 2, 3)]
    result = error_breakdown(CODE, char_log_probs(model, CODE), ngrams=oracles, train_text=CODE)
    assert result.oracle_orders == (1, 2, 3)
    assert sum(c.count for c in result.categories) == result.num_errors > 0
    # The 3-gram fitted on this very text predicts it well: it explains most of an untrained LSTM's errors.
    assert result["ngram"].count > result.num_errors / 2


def test_error_breakdown_bad_input():
    lstm, oracles = breakdown_inputs()
    with pytest.raises(ValueError, match="`ngrams` is empty"):
        error_breakdown(TEXT, lstm, ngrams={}, train_text=TRAIN)
    with pytest.raises(ValueError, match=r"`ngrams\[2\]` has shape \(4,\) but the text has 29 characters"):
        error_breakdown(TEXT, lstm, ngrams={2: np.zeros(4)}, train_text=TRAIN)
    with pytest.raises(ValueError, match=r"`threshold` must be a probability in \(0, 1\), got 1.5"):
        error_breakdown(TEXT, lstm, ngrams=oracles, train_text=TRAIN, threshold=1.5)
    with pytest.raises(ValueError, match=r"`memory_windows` must be positive integers, got \[0\]"):
        error_breakdown(TEXT, lstm, ngrams=oracles, train_text=TRAIN, memory_windows=[0])
