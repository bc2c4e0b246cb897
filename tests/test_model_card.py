"""Model cards rendered from a folder's config.json and results.json (``lstm_interp.models.model_card``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from lstm_interp import CharLSTM
from lstm_interp.hub import PRETRAINED, make_model_card, save_model_card
from lstm_interp.models.model_files import LIBRARY_NAME, MODEL_TAGS, PAPER_URL

ROOT = Path(__file__).resolve().parents[1]
CARDS = sorted(p.parent.name for p in (ROOT / "model_cards").glob("*/config.json"))

RESULTS = {
    "name": "novel",
    "repo_id": "lstm-interp/char-lstm-war-and-peace",
    "license": "mit",
    "dataset": {
        "name": "War and Peace (Maude translation)",
        "license": "public domain",
        "source": "https://www.gutenberg.org/ebooks/2600",
        "split": [0.8, 0.1, 0.1],
        "characters": 3196211,
    },
    "metrics": {
        "test_loss_nats": 1.3012,
        "test_bpc": 1.8773,
        "val_loss_nats": 1.29,
        "test_loss_nats_float32": 1.3009,
        "ngram_order": 20,
        "ngram_test_nats": 1.45,
        "paper_lstm_nats": 1.077,
        "paper_ngram20_nats": 1.195,
        "target_nats": 1.25,
    },
    "training": {
        "steps": 20000,
        "time_s": 5432.0,
        "hardware": "1x NVIDIA H100",
        "precision": "bf16-mixed",
        "config": "configs/novel.yaml",
        "learning_curve": "images/learning_curve.png",
    },
    "cells": [
        {"feature": "inside_quotes", "layer": 1, "unit": 3, "quantity": "cell", "metric": "auc", "score": 0.93,
         "sign": -1, "effect": -1.386, "visible": True,
         "controls": [{"control": "dialogue_line", "score": 0.79, "partial": 0.996, "partial_effect": 1.2}],
         "beats_controls": True, "target": 0.9, "met": True, "image": "images/inside_quotes.png"},
        {"feature": "line_position", "layer": 0, "unit": 7, "quantity": "cell", "metric": "pearson", "score": 0.61,
         "sign": 1, "effect": 0.04, "visible": False, "target": 0.8, "met": False},
    ],
    "sections": [
        {"title": "Is there an if cell?", "text": "**No.** Only a parenthesis cell.", "image": "images/if.png"},
        {"title": "Text only", "text": "Nothing to show."},
    ],
    "notes": ["Scored in 64 primed streams.", "The line cell missed its target."],
}  # fmt: skip


@pytest.fixture
def model_dir(tmp_path: Path, make_model: Callable[..., CharLSTM]) -> Path:
    model = make_model('The "quoted" text\n', from_text=True)
    folder = tmp_path / "novel"
    model.half().save_pretrained(folder)
    (folder / "README.md").unlink()  # start from the model's files alone
    return folder


@pytest.fixture
def full_dir(model_dir: Path) -> Path:
    (model_dir / "images").mkdir()
    for name in ("learning_curve.png", "inside_quotes.png", "if.png"):
        (model_dir / "images" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    (model_dir / "results.json").write_text(json.dumps(RESULTS))
    return model_dir


def test_minimal_card_without_results(model_dir):
    card = make_model_card(model_dir, repo_id="me/tiny")
    text = str(card)
    assert card.data.library_name == "lstm_interp" and "char-rnn" in card.data.tags
    assert card.data.eval_results is None and card.data.license is None
    assert "## Configuration" in text and "| `hidden_size` | 8 |" in text and "stored as float16" in text
    assert 'load_pretrained("me/tiny")' in text and '"The "' in text
    for absent in ("## Data", "## Results", "## Training", "## Interpretable cells", "## Notes", "\n\n\n"):
        assert absent not in text


def test_full_card_has_every_section_and_model_index(full_dir):
    card = make_model_card(full_dir)
    text = str(card)
    assert card.data.license == "mit" and card.data.datasets == ["war-and-peace-maude-translation"]
    assert "novel" in card.data.tags and card.data.pipeline_tag == "text-generation"
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"cross_entropy": 1.3012, "bits_per_character": 1.8773}
    assert card.data.model_name == "char-lstm-war-and-peace"
    assert "# lstm-interp/char-lstm-war-and-peace" in text
    assert "| characters | 3,196,211 |" in text and "80 / 10 / 10 %" in text
    assert "| **this model** (weights as stored) | 1.301 | 1.877 |" in text
    assert "| paper: best LSTM (Karpathy et al. 2015) | 1.077 | 1.554 |" in text
    assert "20-gram, interpolated modified Kneser–Ney" in text and "| paper: 20-gram | 1.195 |" in text
    assert "Target: at most 1.250 nats/char on the test split: **missed**." in text
    assert "| training time | 1 h 30 min |" in text and "![learning curve" in text
    header = ("| feature | layer | unit | quantity | sign | metric | score | effect | control | control score | "
              "given control | beats the control | target | result |")  # fmt: skip
    assert header in text
    assert ("| `inside_quotes` | 1 | 3 | cell | − | auc | 0.930 | −1.39 | `dialogue_line` | 0.790 | 0.996 | **yes** "
            "| 0.90 | met |") in text  # fmt: skip
    assert "| `line_position` | 0 | 7 | cell | + | pearson | 0.610 | +0.04 (flat) |  |  |  |  | 0.80 |" in text
    assert "| missed (best 0.610) |" in text and "(images/inside_quotes.png)" in text
    section = "## Is there an if cell?\n\n**No.** Only a parenthesis cell.\n\n![Is there an if cell?](images/if.png)"
    assert section in text
    assert "## Text only\n\nNothing to show.\n\n## Notes" in text
    assert 'load_pretrained("novel")' in text and "\n\n\n" not in text
    assert "## Notes\n\n- Scored in 64 primed streams.\n- The line cell missed its target.\n" in text


def test_usage_names_the_repo_when_pushed_elsewhere(full_dir):
    assert PRETRAINED["novel"] == RESULTS["repo_id"]
    text = str(make_model_card(full_dir, repo_id="me/my-copy"))
    assert 'load_pretrained("me/my-copy")' in text and "# me/my-copy" in text


def test_save_model_card_writes_readme_that_loads_back(full_dir):
    path = save_model_card(full_dir)
    assert path == full_dir / "README.md"
    assert path.read_text() == str(make_model_card(full_dir))
    assert not list(full_dir.glob(".README.md.*"))  # the atomic write left no temporary file
    loaded = ModelCard.load(path)
    assert loaded.data.library_name == "lstm_interp"
    assert {r.metric_type for r in loaded.data.eval_results} == {"cross_entropy", "bits_per_character"}


def test_save_pretrained_writes_the_template_card(tmp_path, make_model):
    folder = tmp_path / "m"
    make_model().save_pretrained(folder, repo_id="me/tiny")
    text = (folder / "README.md").read_text(encoding="utf-8")
    # A line only the template has (the mixin's generic card says "pushed to the Hub using the PytorchModelHubMixin").
    assert "This model comes with [lstm_interp](https://pypi.org/project/lstm-interp/)" in text
    assert "PytorchModelHubMixin" not in text and "model_hub_mixin" not in text
    assert text == str(make_model_card(folder, repo_id="me/tiny")) and 'load_pretrained("me/tiny")' in text
    assert ModelCard.load(folder / "README.md").data.tags == list(MODEL_TAGS)


def test_save_pretrained_replaces_the_folder_whole(full_dir, make_model):
    # An edited card, and results and images its manifest does not list, are not a save's to delete (issue 21):
    # refused, naming them, the folder untouched; overwrite=True says to replace it whole.
    (full_dir / "README.md").write_text("an old card\n", encoding="utf-8")
    before = sorted(p.relative_to(full_dir).as_posix() for p in full_dir.rglob("*"))
    with pytest.raises(FileExistsError, match=r"README\.md \(changed since the run wrote it\).*--overwrite"):
        make_model('The "quoted" text\n', from_text=True).save_pretrained(full_dir)
    assert sorted(p.relative_to(full_dir).as_posix() for p in full_dir.rglob("*")) == before
    make_model('The "quoted" text\n', from_text=True).save_pretrained(full_dir, overwrite=True)
    text = (full_dir / "README.md").read_text(encoding="utf-8")
    assert text == str(make_model_card(full_dir)) and "## Results" not in text
    assert f"# {full_dir.name}" in text and ".partial-" not in text  # named for the folder, not its staging copy
    assert sorted(p.name for p in full_dir.iterdir()) == [
        "README.md", "config.json", "manifest.json", "model.safetensors", "vocab.json"
    ]
    assert [p.name for p in full_dir.parent.iterdir()] == [full_dir.name]  # no temporaries left beside it


def test_tags_and_paper_are_defined_once():
    """The mixin's class metadata and the card read the same constants of lstm_interp.models.char_lstm."""
    info = CharLSTM._hub_mixin_info
    assert set(MODEL_TAGS) <= set(info.model_card_data.tags) and info.paper_url == PAPER_URL
    assert info.model_card_data.library_name == LIBRARY_NAME
    assert "model_hub_mixin" not in MODEL_TAGS  # the mixin appended its tag to a copy


@pytest.mark.parametrize(
    ("patch", "error", "match"),
    [
        ({"metrics": {"test_loss_nats": "1.3"}}, ValueError, r"`metrics\.test_loss_nats` must be a number, got '1\.3'"),
        ({"cells": [{"feature": "x", "layer": 1.5}]}, ValueError, r"`cells\[0\]\.layer` must be an integer"),
        ({"cells": [{"met": "yes"}]}, ValueError, r"`cells\[0\]\.met` must be true or false"),
        ({"cells": [{"effect": None}]}, ValueError, r"`cells\[0\]\.effect` must be a number"),
        (
            {"cells": [{"controls": [{"control": "c", "partial": "0.9"}]}]},
            ValueError,
            r"`cells\[0\]\.controls\[0\]\.partial` must be a number",
        ),
        ({"cells": [{"beats_controls": 1}]}, ValueError, r"`cells\[0\]\.beats_controls` must be true or false"),
        ({"sections": [{"title": "t"}]}, ValueError, r"`sections\[0\]` has no `text`"),
        ({"sections": [{"title": "t", "text": 3}]}, ValueError, r"`sections\[0\]\.text` must be a string"),
        (
            {"sections": [{"title": "t", "text": "x", "image": "images/none.png"}]},
            FileNotFoundError,
            r"`sections\[0\]\.image` .* names 'images/none\.png'",
        ),
        ({"dataset": {"split": [0.8, "x"]}}, ValueError, r"`dataset\.split` must be a list of numbers"),
        ({"training": []}, ValueError, r"`training` must be a JSON object"),
        ({"training": {"learning_curve": "images/none.png"}}, FileNotFoundError, r"names 'images/none\.png'"),
        ({"training": {"learning_curve": "../escape.png"}}, ValueError, r"must be a path inside the model folder"),
    ],
)
def test_bad_results_are_reported_by_key(model_dir, patch, error, match):
    (model_dir / "results.json").write_text(json.dumps(patch))
    with pytest.raises(error, match=match):
        make_model_card(model_dir)


def test_truncated_results_json_is_reported(model_dir):
    (model_dir / "results.json").write_text(json.dumps(RESULTS)[:50])
    with pytest.raises(ValueError, match=r"results\.json.* is not valid JSON"):
        make_model_card(model_dir)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_model_card(model_dir / "nowhere")


def test_template_ships_in_the_pretrained_package():
    packaged = resources.files("lstm_interp.pretrained").joinpath("template.md").read_text(encoding="utf-8")
    assert packaged == (ROOT / "model_cards" / "template.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", CARDS)
def test_committed_cards_are_rendered_from_their_files(name):
    """model_cards/<name>/README.md is what save_model_card makes of its config.json and results.json."""
    folder = ROOT / "model_cards" / name
    assert (folder / "README.md").read_text(encoding="utf-8") == str(make_model_card(folder)), (
        f"regenerate it: python -c 'from lstm_interp.hub import save_model_card; save_model_card(\"{folder}\")'"
    )
