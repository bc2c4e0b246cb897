"""The model card (``README.md``) of a saved model folder, rendered from its ``config.json`` and ``results.json``.

The card is a huggingface_hub :class:`~huggingface_hub.ModelCard`: YAML metadata (``library_name: lstm_interp``,
license, datasets, the tags ``MODEL_TAGS`` of :mod:`lstm_interp.models.model_files`, metrics and their values as a
``model-index`` of :class:`~huggingface_hub.EvalResult`) and the Jinja template ``template.md`` of the package
``lstm_interp.pretrained`` (the repository's ``model_cards/``). ``CharLSTM.save_pretrained``, ``CharLSTM.push_to_hub``
and :func:`lstm_interp.hub.push_to_hub` all write this card.
Every section but the usage snippet comes from a file of the folder, and is left out when its data is absent:
a folder holding only ``config.json``, ``vocab.json`` and ``model.safetensors`` gets a short, valid card.

``results.json`` (written by the evaluation script; every key is optional, other keys are ignored)::

    {
      "name": "novel",                        # short name for load_pretrained ("novel" | "code"), if any
      "repo_id": "lstm-interp/char-lstm-war-and-peace",
      "license": "mit",                       # license of the model (the code model: "gpl-2.0")
      "language": "en",                       # card metadata (ISO 639 code, or "code")
      "prompt": "The ",                       # start of the usage snippet's sample (default: "The " if in vocab)
      "dataset": {"name": "War and Peace (Maude translation)", "id": "war-and-peace", "license": "public domain",
                  "source": "https://www.gutenberg.org/ebooks/2600", "split": [0.8, 0.1, 0.1],
                  "characters": 3196211},
      "metrics": {"test_loss_nats": 1.32, "test_bpc": 1.90,       # of the weights as stored (float16)
                  "val_loss_nats": 1.30, "test_loss_nats_float32": 1.32,
                  "ngram_order": 20, "ngram_test_nats": 1.45,     # our interpolated modified Kneser-Ney n-gram
                  "paper_lstm_nats": 1.077, "paper_ngram20_nats": 1.195,
                  "target_nats": 1.40},
      "training": {"steps": 20000, "time_s": 5400.0, "hardware": "1x NVIDIA H100", "precision": "bf16-mixed",
                   "config": "configs/novel.yaml", "learning_curve": "images/learning_curve.png"},
      "cells": [{"feature": "inside_quotes", "layer": 2, "unit": 37, "quantity": "cell", "metric": "auc",
                 "score": 0.93, "sign": 1, "effect": 1.39, "visible": true,
                 "controls": [{"control": "dialogue_line", "score": 0.79, "partial": 0.99, "partial_effect": 1.2}],
                 "beats_controls": true, "target": 0.9, "met": true, "image": "images/inside_quotes.png"}],
      "sections": [{"title": "Is there an if-condition cell?", "text": "Markdown ...", "image": "images/if.png"}],
      "notes": ["How the test loss was measured ...", "Why a target was missed ..."]
    }

Numbers are JSON numbers (nats are natural-log cross-entropy per character); ``score`` is the score of the unit
``find_cells`` ranks first for the feature, ``met`` whether it reached ``target``; ``effect``, ``visible``,
``controls`` (the unit's score on each control, ``partial`` its score on the feature given it) and
``beats_controls`` are that row's (:class:`~lstm_interp.analysis.find_cells.CellScore`); image paths are relative
to the folder and must exist. ``sections`` are findings with a title, Markdown text and an optional picture, each
its own section after the cells; ``notes`` are Markdown sentences listed in a "Notes" section (how things were
measured, what fell short).
"""

from __future__ import annotations

import json
import math
import os
import re
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import SafetensorError, safe_open

from lstm_interp._io import atomic_write_text, read_json_file
from lstm_interp.config import CharLSTMConfig
from lstm_interp.manifest import refresh_manifest
from lstm_interp.models.model_files import (
    CONFIG_NAME,
    LIBRARY_NAME,
    MODEL_TAGS,
    PAPER_URL,
    PRETRAINED,
    VOCAB_NAME,
    WEIGHTS_NAME,
)
from lstm_interp.vocab import CharVocab

RESULTS_NAME = "results.json"
CARD_NAME = "README.md"
TEMPLATE_NAME = "template.md"

_NUMBER, _INT, _STR, _BOOL, _LIST = "a number", "an integer", "a string", "true or false", "a list"
# Expected type of every key results.json may hold (sections are dicts; "cells" is a list of dicts).
_SCHEMA: dict[str, Any] = {
    "name": _STR,
    "repo_id": _STR,
    "license": _STR,
    "language": _STR,
    "prompt": _STR,
    "dataset": {"name": _STR, "id": _STR, "license": _STR, "source": _STR, "split": _LIST, "characters": _INT},
    "metrics": {
        **dict.fromkeys(
            ["test_loss_nats", "test_bpc", "val_loss_nats", "test_loss_nats_float32", "ngram_test_nats"], _NUMBER
        ),
        **dict.fromkeys(["paper_lstm_nats", "paper_ngram20_nats", "target_nats"], _NUMBER),
        "ngram_order": _INT,
    },
    "training": {"steps": _INT, "time_s": _NUMBER, "hardware": _STR, "precision": _STR, "config": _STR},
    "cells": _LIST,
    "sections": _LIST,
    "notes": _LIST,
}
_TRAINING_IMAGE = "learning_curve"
_CELL_SCHEMA = {
    "feature": _STR,
    "layer": _INT,
    "unit": _INT,
    "quantity": _STR,
    "metric": _STR,
    "score": _NUMBER,
    "sign": _INT,
    "effect": _NUMBER,
    "visible": _BOOL,
    "controls": _LIST,
    "beats_controls": _BOOL,
    "target": _NUMBER,
    "met": _BOOL,
}
_CONTROL_SCHEMA = {"control": _STR, "score": _NUMBER, "partial": _NUMBER, "partial_effect": _NUMBER}
_SECTION_SCHEMA = {"title": _STR, "text": _STR, "image": _STR}


def make_model_card(
    model_dir: str | os.PathLike, *, repo_id: str | None = None, final_dir: str | os.PathLike | None = None
) -> ModelCard:
    """Render the model card of the saved model in ``model_dir``.

    Args:
        model_dir: a folder written by ``save_pretrained`` (``config.json``, ``vocab.json``, ``model.safetensors``),
            optionally with ``results.json`` (schema in this module's docstring) and the ``images/`` it names.
        repo_id: the Hub repository the card is for (default: ``results.json``'s ``repo_id``); it picks the name
            shown in the usage snippet: the short name (``"novel"``) for the official repository, else ``repo_id``.
        final_dir: the path the folder will have, where ``model_dir`` is a staging folder swapped into place later
            (the card names the folder where no repo does); default ``model_dir``.

    Returns:
        The card; ``str(card)`` is the ``README.md`` text, ``card.data`` its metadata.

    Raises:
        FileNotFoundError: if ``model_dir`` does not exist, or ``results.json`` names an image the folder lacks.
        ValueError: if ``results.json`` is not valid JSON or a value has the wrong type (the message names the key),
            or ``model.safetensors`` cannot be read (``ConfigError``/``VocabularyError`` for a bad config or vocab).

    Example::

        >>> card = make_model_card("model_cards/novel")  # doctest: +SKIP
        >>> card.data.library_name  # doctest: +SKIP
        'lstm_interp'
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
    final = Path(final_dir) if final_dir is not None else folder
    results = _load_results(folder / RESULTS_NAME)
    repo_id = repo_id or results.get("repo_id")
    config = CharLSTMConfig.load(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else None
    vocab = CharVocab.load(folder / VOCAB_NAME) if (folder / VOCAB_NAME).is_file() else None
    dataset = results.get("dataset", {})
    metrics = results.get("metrics", {})
    eval_results = _eval_results(dataset, metrics)
    card_data = ModelCardData(
        language=results.get("language"),
        license=results.get("license"),
        library_name=LIBRARY_NAME,
        tags=[*MODEL_TAGS, *([results["name"]] if "name" in results else [])],
        datasets=[_dataset_id(dataset)] if "name" in dataset else None,
        metrics=["cross_entropy", "bits_per_character"] if "test_loss_nats" in metrics else None,
        pipeline_tag="text-generation",
        model_name=(repo_id or final.resolve().name).split("/")[-1] if eval_results else None,
        eval_results=eval_results or None,
    )
    load_argument = _load_argument(results.get("name"), repo_id, final)
    cells = [_cell_row(cell, folder, i) for i, cell in enumerate(results.get("cells", []))]
    context = {
        "title": repo_id or final.resolve().name,
        "summary": _summary(config, dataset),
        "paper_url": PAPER_URL,
        "dataset": _dataset_section(dataset),
        "config_rows": sorted(config.to_dict().items()) if config is not None else [],
        "weights": _weights_section(folder / WEIGHTS_NAME),
        "results": _results_rows(metrics),
        "val_loss": _nats(metrics["val_loss_nats"]) if "val_loss_nats" in metrics else None,
        "target": _target(metrics),
        "training": _training_section(results.get("training", {}), folder),
        "cells": cells,
        "cell_effects": any(cell["effect"] for cell in cells),
        "cell_controls": any(cell["control"] for cell in cells),
        "sections": [_section(section, folder, i) for i, section in enumerate(results.get("sections", []))],
        "notes": [str(note) for note in results.get("notes", [])],
        "load_argument": json.dumps(load_argument),
        "short_name": load_argument == results.get("name"),
        "prompt": json.dumps(_prompt(results.get("prompt"), vocab)),
    }
    template = resources.files("lstm_interp.pretrained").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    return ModelCard.from_template(card_data, template_str=template, **context)


def save_model_card(
    model_dir: str | os.PathLike, *, repo_id: str | None = None, final_dir: str | os.PathLike | None = None
) -> Path:
    """Render the card of ``model_dir`` (see :func:`make_model_card`) and write it to ``model_dir/README.md``.

    The file is written atomically: a reader never sees half a card. A ``manifest.json`` in the folder is brought
    up to date with it (:func:`~lstm_interp.manifest.refresh_manifest`).

    Returns:
        The path of ``README.md``.

    Example::

        >>> save_model_card("model_cards/novel")  # doctest: +SKIP
        PosixPath('model_cards/novel/README.md')
    """
    card = make_model_card(model_dir, repo_id=repo_id, final_dir=final_dir)
    path = Path(model_dir) / CARD_NAME
    atomic_write_text(path, str(card))
    refresh_manifest(model_dir)
    return path


# ---------------------------------------------------------------------------------------------- results.json
def _load_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = read_json_file(path, "model card results")
    _check(data, _SCHEMA, str(path), "")
    for i, cell in enumerate(data.get("cells", [])):
        _check(cell, _CELL_SCHEMA, str(path), f"cells[{i}].")
        for j, control in enumerate(cell.get("controls", [])):
            _check(control, _CONTROL_SCHEMA, str(path), f"cells[{i}].controls[{j}].")
    for i, section in enumerate(data.get("sections", [])):
        _check(section, _SECTION_SCHEMA, str(path), f"sections[{i}].")
        for key in ("title", "text"):
            if key not in section:
                raise ValueError(f"{str(path)!r}: `sections[{i}]` has no `{key}`; a section needs a title and text")
    split = data.get("dataset", {}).get("split")
    if split is not None and not all(_is_number(x) for x in split):
        raise ValueError(f"{str(path)!r}: `dataset.split` must be a list of numbers, got {split!r}")
    return data


def _check(data: Any, schema: dict[str, Any], source: str, prefix: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{source!r}: `{prefix.rstrip('.') or 'results'}` must be a JSON object, got {data!r}")
    for key, expected in schema.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(expected, dict):
            _check(value, expected, source, f"{prefix}{key}.")
        elif not _has_type(value, expected):
            raise ValueError(f"{source!r}: `{prefix}{key}` must be {expected}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _has_type(value: Any, expected: str) -> bool:
    if expected == _NUMBER:
        return _is_number(value)
    if expected == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _BOOL: bool, _LIST: list}[expected])


def _image(value: Any, folder: Path, key: str) -> str:
    """A relative image path of the folder, checked to exist (the card links it)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{key}` in {RESULTS_NAME} must be a relative path, got {value!r}")
    posix = PurePosixPath(value)
    if posix.is_absolute() or ".." in posix.parts:
        raise ValueError(f"`{key}` in {RESULTS_NAME} must be a path inside the model folder, got {value!r}")
    if not (folder / posix).is_file():
        raise FileNotFoundError(f"`{key}` in {RESULTS_NAME} names {value!r}, which is not in {str(folder)!r}")
    return posix.as_posix()


# ---------------------------------------------------------------------------------------------- sections
def _eval_results(dataset: dict[str, Any], metrics: dict[str, Any]) -> list[EvalResult]:
    if "name" not in dataset or "test_loss_nats" not in metrics:
        return []
    common = {
        "task_type": "text-generation",
        "task_name": "Character-level language modelling",
        "dataset_type": _dataset_id(dataset),
        "dataset_name": dataset["name"],
        "dataset_split": "test",
    }
    bpc = metrics.get("test_bpc", metrics["test_loss_nats"] / math.log(2))
    return [
        EvalResult(
            **common,
            metric_type="cross_entropy",
            metric_name="Test loss (nats/char)",
            metric_value=round(metrics["test_loss_nats"], 4),
        ),
        EvalResult(
            **common, metric_type="bits_per_character", metric_name="Test bits/char", metric_value=round(bpc, 4)
        ),
    ]


def _dataset_id(dataset: dict[str, Any]) -> str:
    """``dataset.id``, else a slug of its name: "War and Peace (Maude)" -> "war-and-peace-maude"."""
    return dataset.get("id") or "-".join(re.findall(r"[a-z0-9]+", dataset["name"].lower()))


def _summary(config: CharLSTMConfig | None, dataset: dict[str, Any]) -> str:
    if config is None:
        return "A character-level recurrent network of lstm_interp."
    shape = (
        f"{config.num_layers} layer{'s' if config.num_layers > 1 else ''} of {config.hidden_size} units, "
        f"{config.embedding_size}-dimensional embedding, {config.vocab_size} characters"
    )
    trained = f" trained on {dataset['name']}" if "name" in dataset else ""
    return f"A character-level {config.cell.upper()} ({shape}){trained}, predicting the next character."


def _dataset_section(dataset: dict[str, Any]) -> dict[str, str] | None:
    if "name" not in dataset:
        return None
    section = {key: str(dataset[key]) for key in ("name", "source", "license") if key in dataset}
    if "characters" in dataset:
        section["characters"] = f"{dataset['characters']:,}"
    if "split" in dataset:
        section["split"] = " / ".join(f"{100 * x:g}" for x in dataset["split"]) + " %"
    return section


def _weights_section(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as weights:
            slices = [weights.get_slice(name) for name in weights.keys()]  # noqa: SIM118 (not a dict)
            count = sum(math.prod(s.get_shape()) for s in slices)
            dtypes = sorted({s.get_dtype() for s in slices})
    except (SafetensorError, OSError) as err:
        raise ValueError(f"weights file {str(path)!r} is corrupted or truncated: {err}") from err
    names = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
    size = path.stat().st_size
    return {
        "parameters": f"{count:,}",
        "dtype": ", ".join(names.get(d, d) for d in dtypes),
        "size": f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB",
    }


def _nats(value: float) -> str:
    return f"{value:.3f}"


def _results_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []

    def add(model: str, nats: float, bpc: float | None = None) -> None:
        rows.append({"model": model, "nats": _nats(nats), "bpc": f"{(bpc or nats / math.log(2)):.3f}"})

    if "test_loss_nats" in metrics:
        add("**this model** (weights as stored)", metrics["test_loss_nats"], metrics.get("test_bpc"))
    if "test_loss_nats_float32" in metrics:
        add("this model, float32 weights before rounding", metrics["test_loss_nats_float32"])
    if "ngram_test_nats" in metrics:
        order = metrics.get("ngram_order")
        add(f"{order or 'n'}-gram, interpolated modified Kneser–Ney (lstm_interp.ngram)", metrics["ngram_test_nats"])
    if "paper_lstm_nats" in metrics:
        add("paper: best LSTM (Karpathy et al. 2015)", metrics["paper_lstm_nats"])
    if "paper_ngram20_nats" in metrics:
        add("paper: 20-gram", metrics["paper_ngram20_nats"])
    return rows


def _target(metrics: dict[str, Any]) -> dict[str, Any] | None:
    if "target_nats" not in metrics or "test_loss_nats" not in metrics:
        return None
    return {"nats": _nats(metrics["target_nats"]), "met": metrics["test_loss_nats"] <= metrics["target_nats"]}


def _training_section(training: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    rows = []
    if "steps" in training:
        rows.append(("optimizer steps", f"{training['steps']:,}"))
    if "time_s" in training:
        rows.append(("training time", _duration(training["time_s"])))
    for key, label in (("hardware", "hardware"), ("precision", "precision")):
        if key in training:
            rows.append((label, training[key]))
    if "config" in training:
        rows.append(("config", f"`{training['config']}` (`lstm-interp fit --config {training['config']}`)"))
    curve = training.get(_TRAINING_IMAGE)
    if curve is not None:
        curve = _image(curve, folder, f"training.{_TRAINING_IMAGE}")
    if not rows and curve is None:
        return None
    return {"rows": rows, "learning_curve": curve}


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _cell_row(cell: dict[str, Any], folder: Path, index: int) -> dict[str, Any]:
    row = {key: cell.get(key, "") for key in ("feature", "layer", "unit", "quantity", "metric")}
    row["sign"] = ("−" if cell["sign"] < 0 else "+") if "sign" in cell else ""
    row["score"] = f"{cell['score']:.3f}" if "score" in cell else ""
    row["target"] = f"{cell['target']:.2f}" if "target" in cell else ""
    met = cell.get("met")
    row["result"] = "" if met is None else ("met" if met else f"missed (best {row['score'] or '?'})")
    row["image"] = _image(cell["image"], folder, f"cells[{index}].image") if "image" in cell else None
    # The picture's view of the row: how far tanh(c) moves with the feature, "flat" below the visible threshold.
    row["effect"] = ""
    if "effect" in cell:
        row["effect"] = f"{cell['effect']:+.2f}".replace("-", "−") + ("" if cell.get("visible", True) else " (flat)")
    controls = cell.get("controls", [])
    row["control"] = ", ".join(f"`{c['control']}`" for c in controls if "control" in c)
    row["control_score"] = ", ".join(f"{c['score']:.3f}" for c in controls if "score" in c)
    row["partial"] = ", ".join(f"{c['partial']:.3f}" for c in controls if "partial" in c)
    beats = cell.get("beats_controls")
    row["beats"] = "" if beats is None or not controls else ("**yes**" if beats else "no")
    return row


def _section(section: dict[str, Any], folder: Path, index: int) -> dict[str, Any]:
    image = section.get("image")
    return {
        "title": section["title"],
        "text": section["text"],
        "image": _image(image, folder, f"sections[{index}].image") if image is not None else None,
    }


def _load_argument(name: str | None, repo_id: str | None, folder: Path) -> str:
    """What the usage snippet passes to ``load_pretrained``: the short name for the official repo."""
    if name in PRETRAINED and repo_id in (None, PRETRAINED[name]):
        return name
    return repo_id or str(folder)


def _prompt(prompt: str | None, vocab: CharVocab | None) -> str:
    if prompt is not None:
        return prompt
    for candidate in ("The ", "\n"):
        if vocab is None or all(char in vocab for char in candidate):
            return candidate
    return vocab.chars[0] if vocab is not None else "\n"
