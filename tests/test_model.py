"""CharLSTMConfig and the CharLSTM network: shapes, sampling, top-k predictions, save/load and its errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch

from lstm_interp import CharLSTM, CharLSTMConfig, CharVocab, ConfigError, VocabularyError

VOCAB = CharVocab("abc de\n")


@pytest.fixture
def tiny(make_model: Callable[..., CharLSTM]) -> Callable[..., CharLSTM]:
    """The tiny-model factory with this file's vocabulary: ``tiny("gru", num_layers=2)``."""

    def build(cell: str = "lstm", **kwargs: Any) -> CharLSTM:
        return make_model(VOCAB, cell=cell, **kwargs)

    return build


# ---------------------------------------------------------------- config
def test_config_round_trips_through_json(tmp_path):
    config = CharLSTMConfig(vocab_size=65, cell="gru", num_layers=3, hidden_size=32, embedding_size=16, dropout=0.1)
    path = config.save(tmp_path / "config.json")
    assert CharLSTMConfig.load(path) == config
    assert json.loads(path.read_text())["cell"] == "gru"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "transformer"}, r"`cell` must be one of \['lstm', 'gru', 'rnn'\], got 'transformer'"),
        ({"hidden_size": 0}, "`hidden_size` must be a positive integer, got 0"),
        ({"num_layers": -1}, "`num_layers` must be a positive integer, got -1"),
        ({"embedding_size": 2.5}, "`embedding_size` must be a positive integer, got 2.5"),
        ({"vocab_size": 0}, "`vocab_size` must be a positive integer, got 0"),
        ({"dropout": 1.0}, r"`dropout` must be a number in \[0, 1\), got 1.0"),
        ({"format_version": 99}, "`format_version` 99 is not supported"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CharLSTMConfig(**{"vocab_size": 10, **kwargs})


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown keys \['n_heads'\]"):
        CharLSTMConfig.from_dict({"vocab_size": 3, "n_heads": 4})


# ---------------------------------------------------------------- network
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_shapes_and_state_carry(cell, tiny):
    model = tiny(cell, num_layers=2).eval()
    tokens = VOCAB.encode("abc de\nab")[None].repeat(3, 1)
    logits, state = model(tokens)
    assert logits.shape == (3, 9, len(VOCAB))
    assert len(state) == 2
    # Feeding the text in two pieces with the carried state gives the same logits as one pass.
    first, state = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), logits, atol=1e-6, rtol=0)


def test_vocab_size_must_match_config():
    with pytest.raises(VocabularyError, match=r"vocabulary has 7 characters but config\.vocab_size=5"):
        CharLSTM(CharLSTMConfig(vocab_size=5), VOCAB)


def test_generate_is_reproducible_with_a_seed_and_restores_mode(tiny):
    model = tiny().train()
    a = model.generate("ab", 30, temperature=0.8, seed=3)
    b = model.generate("ab", 30, temperature=0.8, seed=3)
    assert a == b and a.startswith("ab") and len(a) == 32
    assert set(a) <= set(VOCAB.chars)
    assert model.training
    assert model.generate("ab", 5, seed=1, include_prompt=False) == model.generate("ab", 5, seed=1)[2:]


def test_generate_greedy_and_top_k_one_agree(tiny):
    model = tiny()
    greedy = model.generate("a", 20, temperature=0)
    assert greedy == model.generate("a", 20, temperature=1.0, top_k=1, seed=0)
    assert greedy == model.generate("a", 20, temperature=0, seed=99)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prompt": "xyz"}, VocabularyError, r"'x' \(first at 0\)"),
        ({"prompt": ""}, ValueError, "`prompt` must be non-empty"),
        ({"length": -1}, ValueError, "`length` must be >= 0, got -1"),
        ({"temperature": -0.5}, ValueError, "`temperature` must be a finite number >= 0, got -0.5"),
        ({"top_k": 0}, ValueError, "`top_k` must be >= 1 or None, got 0"),
    ],
)
def test_generate_bad_input(kwargs, error, match, tiny):
    with pytest.raises(error, match=match):
        tiny().generate(**kwargs)


def test_predict_next_gives_sorted_probabilities_for_every_position(tiny):
    model = tiny()
    rows = model.predict_next("abc", k=3)
    assert len(rows) == 3
    with torch.no_grad():
        logits, _ = model(VOCAB.encode("abc")[None])
    probs = torch.softmax(logits[0], -1)
    for t, row in enumerate(rows):
        assert len(row) == 3
        assert [p for _, p in row] == sorted((p for _, p in row), reverse=True)
        for char, p in row:
            assert p == pytest.approx(float(probs[t, VOCAB.char_to_id(char)]), abs=1e-6)
    with pytest.raises(ValueError, match="`k` must be between 1 and the vocabulary size 7, got 8"):
        model.predict_next("abc", k=8)


# ---------------------------------------------------------------- save / load
def test_save_pretrained_round_trip(tmp_path, tiny):
    model = tiny("gru", num_layers=2)
    model.save_pretrained(tmp_path / "m")
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "vocab.json", "model.safetensors"} <= names
    assert "README.md" in names  # the card (tests/test_model_card.py checks it is the template's)
    assert not [n for n in names if n.endswith(".tmp")]
    loaded = CharLSTM.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and loaded.vocab == model.vocab
    tokens = VOCAB.encode("abc de")[None]
    torch.testing.assert_close(loaded(tokens)[0], model.eval()(tokens)[0], atol=0, rtol=0)


@pytest.fixture
def saved(tmp_path, tiny):
    tiny().save_pretrained(tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "model.safetensors"])
def test_missing_file_is_named(saved, name):
    (saved / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{name} is missing from the model folder"):
        CharLSTM.from_pretrained(saved)


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("config.json", ConfigError, r"config file .*config\.json.* is not valid JSON"),
        ("vocab.json", VocabularyError, r"vocabulary file .*vocab\.json.* is not valid JSON"),
        ("model.safetensors", ValueError, r"weights file .*model\.safetensors.* is corrupted or truncated"),
    ],
)
def test_truncated_file_is_named(saved, name, error, match):
    data = (saved / name).read_bytes()
    (saved / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(error, match=match):
        CharLSTM.from_pretrained(saved)


def test_weights_that_do_not_fit_the_config_are_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["hidden_size"] = 9
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model\.safetensors.* does not match config\.json"):
        CharLSTM.from_pretrained(saved)


def test_config_from_a_newer_version_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["format_version"] = 2
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="`format_version` 2 is not supported"):
        CharLSTM.from_pretrained(saved)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CharLSTM.from_pretrained(tmp_path / "nowhere" / "model")


def test_a_file_is_not_a_model_folder(saved):
    with pytest.raises(NotADirectoryError, match=r"config\.json' is a file, expected a model folder"):
        CharLSTM.from_pretrained(saved / "config.json")


def test_generate_type_errors_name_the_parameter(make_model):
    model = make_model()
    with pytest.raises(TypeError, match=r"`temperature` must be a number, got str '0\.5'"):
        model.generate("a", 5, temperature="0.5")
    with pytest.raises(TypeError, match=r"`top_k` must be an integer or None, got float 2\.5"):
        model.generate("a", 5, top_k=2.5)
    with pytest.raises(TypeError, match=r"`length` must be an integer, got float 5\.0"):
        model.generate("a", 5.0)
    assert len(model.generate("a", 3, temperature=1, top_k=2, include_prompt=False)) == 3
