"""Publish a model to the Hugging Face Hub: its files, a freshly rendered model card, all in one commit.

This is the one way lstm_interp publishes: ``CharLSTM.push_to_hub``, ``CharLSTM.save_pretrained(push_to_hub=True)``
and ``lstm-interp push`` all call :func:`push_to_hub`, so every repo gets the same card (``model_card.py``).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
from huggingface_hub import CommitOperationAdd, HfApi

from lstm_interp._io import scratch_folder
from lstm_interp.hub.load_pretrained import load_pretrained, source_kind
from lstm_interp.manifest import MANIFEST_NAME, model_provenance, write_manifest
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.models.model_card import CARD_NAME, RESULTS_NAME, save_model_card
from lstm_interp.models.model_files import MODEL_FILES

IMAGES_DIR = "images"
IMAGE_SUFFIXES = (".png",)
DEFAULT_COMMIT_MESSAGE = "Upload lstm_interp model"


def push_to_hub(
    model_or_dir: CharLSTM | str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
    dtype: torch.dtype | None = None,
) -> str:
    """Upload a model to a Hub repo in one commit, creating the repo (and the branch) if needed.

    The commit holds ``config.json``, ``vocab.json``, ``model.safetensors`` and a ``README.md`` model card rendered
    by :func:`~lstm_interp.hub.make_model_card` (a model without ``results.json`` gets a minimal card), plus the
    folder's ``results.json`` and ``images/*.png`` if it has them. Anything but a model in hand is opened with
    :func:`~lstm_interp.load_pretrained` first, so that a broken model is refused before anything is uploaded. The
    Hub is the one of ``HF_ENDPOINT`` (default huggingface.co).

    Args:
        model_or_dir: a :class:`~lstm_interp.CharLSTM`, or anything :func:`~lstm_interp.load_pretrained` opens: a
            folder written by ``save_pretrained`` (such as ``model_cards/novel``; pushed with its ``results.json``
            and images), a ``.ckpt``, a Hub repo id or a pretrained name.
        repo_id: ``"org/name"`` of the Hub repo.
        private: create the repo private (ignored if it exists already: its visibility is left alone).
        revision: the branch to commit to (created from ``main`` if missing); default ``main``.
        commit_message: the commit's summary line (default: ``"Upload lstm_interp model"``).
        token: a Hub token with write access (default: ``HF_TOKEN`` or the saved login).
        create_pr: open a pull request with the commit instead of committing to the branch.
        dtype: store the weights in this floating dtype (``torch.float16`` halves the file); default: as they are.

    Returns:
        The URL of the commit (of the pull request with ``create_pr=True``).

    Raises:
        FileNotFoundError, ValueError: if ``model_or_dir`` cannot be opened (see :func:`~lstm_interp.load_pretrained`),
            or ``dtype`` is not a floating dtype.
        huggingface_hub.errors.HfHubHTTPError: if the Hub refuses a request (no token, no write access, ...).

    Example::

        >>> push_to_hub("model_cards/novel", "me/char-lstm-war-and-peace", private=True)  # doctest: +SKIP
        'https://huggingface.co/me/char-lstm-war-and-peace/commit/0d1f...'
    """
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"`dtype` must be a floating torch.dtype such as torch.float16, or None, got {dtype!r}")
    if not isinstance(model_or_dir, (CharLSTM, str, os.PathLike)):
        raise TypeError(
            f"`model_or_dir` must be a CharLSTM, a model folder or a model name, got {type(model_or_dir).__name__}"
        )
    api = HfApi(token=token)
    # A staging folder that a killed push leaves behind is removed by the next push.
    with scratch_folder("lstm_interp_push_") as staging:
        _stage(model_or_dir, staging, dtype, repo_id)
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(staging).as_posix(), path_or_fileobj=str(path))
            for path in _files_to_upload(staging)
        ]
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        repo_id = repo_url.repo_id or repo_id
        if revision not in (None, "main") and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
            revision=revision,
            create_pr=create_pr,
        )
    return commit.pr_url if create_pr and commit.pr_url else commit.commit_url


def _stage(model_or_dir: CharLSTM | str | os.PathLike, staging: Path, dtype: torch.dtype | None, repo_id: str) -> None:
    """Write into ``staging`` exactly what the commit will hold, then render the card and the manifest from it."""
    if not isinstance(model_or_dir, CharLSTM) and source_kind(model_or_dir) != "folder":
        model_or_dir = load_pretrained(model_or_dir)  # a .ckpt, a repo, a pretrained name: pushed as a model
    if isinstance(model_or_dir, CharLSTM):
        model = copy.deepcopy(model_or_dir).to(dtype) if dtype is not None else model_or_dir
        model._save_pretrained(staging, repo_id=repo_id)  # the files, the card for `repo_id`, the manifest
        return
    else:
        source = Path(model_or_dir)
        model = load_pretrained(source)  # refuse a broken model before uploading anything
        if dtype is not None:
            model.to(dtype)._save_files(staging)
        else:
            for name in MODEL_FILES:
                shutil.copyfile(source / name, staging / name)
        if (source / RESULTS_NAME).is_file():
            shutil.copyfile(source / RESULTS_NAME, staging / RESULTS_NAME)
        for image in sorted((source / IMAGES_DIR).glob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                (staging / IMAGES_DIR).mkdir(exist_ok=True)
                shutil.copyfile(image, staging / IMAGES_DIR / image.name)
    save_model_card(staging, repo_id=repo_id)
    write_manifest(staging, "model", model=model_provenance(model, local_paths=False), arguments={"repo_id": repo_id})


def _files_to_upload(staging: Path) -> list[Path]:
    """The model's files first, then the card, results, images and the manifest of them all: a stable order."""
    names = [*MODEL_FILES, CARD_NAME, RESULTS_NAME]
    files = [staging / name for name in names if (staging / name).is_file()]
    images = sorted((staging / IMAGES_DIR).glob("*")) if (staging / IMAGES_DIR).is_dir() else []
    return [*files, *images, staging / MANIFEST_NAME]
