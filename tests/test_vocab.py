"""Tests for lstm_interp/vocab.py: CharVocab."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lstm_interp.vocab import CharVocab, VocabularyError


def test_from_text_sorts_by_code_point_and_round_trips():
    text = "hello, wörld!\n"
    vocab = CharVocab.from_text(text)
    assert vocab.chars == "".join(sorted(set(text)))
    ids = vocab.encode(text)
    assert ids.dtype == torch.long
    assert vocab.decode(ids) == text
    assert vocab.decode(vocab.encode_array(text)) == text
    assert vocab.encode_array(text).dtype == np.int64
    assert CharVocab.from_text(["hel", "lo"]) == CharVocab("ehlo")


def test_ids_follow_the_given_order():
    vocab = CharVocab("cab")
    assert vocab.encode("abc").tolist() == [1, 2, 0]
    assert vocab.char_to_id("c") == 0
    assert "a" in vocab and "z" not in vocab
    assert list(vocab) == ["c", "a", "b"]


def test_dtype_is_the_smallest_that_holds_every_id():
    assert CharVocab("ab").dtype == np.uint8
    assert CharVocab([chr(c) for c in range(300)]).dtype == np.uint16


def test_save_and_load_round_trip(tmp_path):
    vocab = CharVocab.from_text("naïve café ☕\n\t")
    path = vocab.save(tmp_path / "vocab.json")
    assert CharVocab.load(path) == vocab
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_unknown_characters_are_listed_with_their_first_positions():
    vocab = CharVocab("abc ")
    with pytest.raises(VocabularyError, match=r"2 character\(s\).*'x' \(first at 2\).*'y' \(first at 4\)"):
        vocab.encode("abxcyx")


def test_skip_and_replace_fallbacks():
    vocab = CharVocab("ab?")
    assert vocab.decode(vocab.encode("axbyb", on_unknown="skip")) == "abb"
    assert vocab.decode(vocab.encode("axbyb", on_unknown="replace", replacement="?")) == "a?b?b"
    with pytest.raises(VocabularyError, match="`replacement` must be a character of the vocabulary"):
        vocab.encode("ax", on_unknown="replace", replacement="#")
    with pytest.raises(ValueError, match="got 'ignore'"):
        vocab.encode("ax", on_unknown="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chars", "match"),
    [("", "at least one character"), ("abca", r"duplicate characters: \['a'\]"), (["ab"], "single characters")],
)
def test_invalid_vocabularies(chars, match):
    with pytest.raises(VocabularyError, match=match):
        CharVocab(chars)


def test_decode_rejects_ids_out_of_range():
    with pytest.raises(VocabularyError, match=r"ids \[5\] are outside the vocabulary range \[0, 2\)"):
        CharVocab("ab").decode([0, 5])


def test_truncated_vocab_file_names_the_file(tmp_path):
    path = CharVocab("abc").save(tmp_path / "vocab.json")
    path.write_text(path.read_text()[:-5], encoding="utf-8")
    with pytest.raises(VocabularyError, match=r"vocab\.json.*not valid JSON.*truncated"):
        CharVocab.load(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ([1, 2], "expected a JSON object with a 'chars' list"),
        ({"format_version": 99, "chars": ["a"]}, "format_version 99 is not supported"),
        ({"chars": ["a", "a"]}, "duplicate"),
    ],
)
def test_malformed_vocab_file_names_the_file(tmp_path, content, match):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(VocabularyError, match=match) as info:
        CharVocab.load(path)
    assert "vocab.json" in str(info.value)


def test_missing_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        CharVocab.load(tmp_path / "nope.json")
