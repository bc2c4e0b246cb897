"""``ModelFolderMixin``: how the network saves itself to a folder and opens one, by huggingface_hub's conventions.

:class:`~lstm_interp.CharLSTM` is a :class:`~huggingface_hub.PyTorchModelHubMixin` through this class:
``config.json``, ``vocab.json`` and ``model.safetensors`` are the whole saved model, ``README.md`` its card
(:func:`~lstm_interp.models.model_card.save_model_card`) and ``manifest.json`` the sha256 of it all; the folder is
written whole. ``save_pretrained``/``from_pretrained`` are the mixin's methods, refined (a folder written whole, a
manifest checked, errors that name the file), ``_save_pretrained`` its hook, and ``push_to_hub`` the mixin's own.
The network module (:mod:`lstm_interp.models.char_lstm`) holds the layers, forward and state; the Hub package
(:mod:`lstm_interp.hub`: ``load_pretrained``, ``push_to_hub`` of a folder or checkpoint) imports it, never the
reverse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lstm_interp._io import atomic_folder, atomic_path
from lstm_interp.config import CharLSTMConfig, ConfigError
from lstm_interp.manifest import MANIFEST_NAME, check_replaceable, model_provenance, verify_manifest, write_manifest
from lstm_interp.models.hub_files import hub_files
from lstm_interp.models.model_card import save_model_card
from lstm_interp.models.model_files import (
    CONFIG_NAME,
    LIBRARY_NAME,
    MODEL_FILES,
    MODEL_FOLDER_NAMES,
    VOCAB_NAME,
    WEIGHTS_NAME,
)
from lstm_interp.vocab import CharVocab, VocabularyError

Model = TypeVar("Model", bound="ModelFolderMixin")


class ModelFolderMixin(PyTorchModelHubMixin):
    """``save_pretrained``, ``push_to_hub`` and ``from_pretrained`` of a network with ``config`` and ``vocab``
    (:class:`~lstm_interp.CharLSTM`): see the module docstring. Its class keywords are the mixin's (``library_name``,
    ``tags``, ``paper_url``)."""

    config: CharLSTMConfig
    vocab: CharVocab | None
    source: dict[str, Any] | None

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | os.PathLike,
        *,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        overwrite: bool = False,
        config: Any = None,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write ``config.json``, ``vocab.json``, ``model.safetensors`` and the model card ``README.md``.

        The card is the one every way of publishing writes, rendered from lstm_interp's template by
        :func:`~lstm_interp.models.model_card.save_model_card` (with the folder's ``results.json``, if it has one);
        it replaces a ``README.md`` already in the folder.

        The folder is written whole: everything is built in a hidden sibling folder, with a ``manifest.json`` of
        the files' sha256, then swapped into place in one step (:func:`lstm_interp._io.atomic_folder`). A crash or
        kill leaves the previous folder or none; of two concurrent saves, one complete model wins, never a mixture.
        What an earlier save left there (a ``results.json``, ``images/``) is not kept: it described other weights.

        Args:
            save_directory: the folder (created if missing). If it exists it must be empty, hold only what a model
                folder holds (an older version's, without a manifest), or be an earlier save whose ``manifest.json``
                lists every file in it with a matching sha256, so that a save never deletes a file it did not write
                (a ``notes.txt`` added later, an edited card); ``overwrite=True`` replaces it anyway.
            repo_id: the Hub repo the card is for (its usage snippet names it); with ``push_to_hub``, the repo to
                push to (default: the folder's name).
            push_to_hub: then upload the model with :meth:`push_to_hub`.
            push_to_hub_kwargs: options of :meth:`push_to_hub` (``private``, ``commit_message``, ``token``, ...).
            overwrite: replace the folder even if it holds files the earlier save did not write (or changed).
            config: the mixin's argument; a model's config is its own, so only ``None`` (or its own) is accepted.
            model_card_kwargs: the mixin's argument: ``{"repo_id": ...}`` names the repo in the card's snippet (as
                ``repo_id`` does); :meth:`push_to_hub` passes it.

        Returns:
            The commit URL with ``push_to_hub=True``, else ``None``.

        Raises:
            VocabularyError: if the model has no vocabulary.
            FileExistsError: if the folder holds files a model folder does not (they are named); nothing is written.
            NotADirectoryError: if ``save_directory`` is a file.
        """
        folder = Path(save_directory)
        self._require_vocab()
        if config is not None and config != self.config:
            raise ValueError(f"`config` is the model's own ({self.config}); got another: {config!r:.200}")
        repo_id = repo_id or (model_card_kwargs or {}).get("repo_id")
        check_replaceable(folder, "model", MODEL_FOLDER_NAMES, overwrite=overwrite)
        with atomic_folder(folder) as staging:
            self._save_pretrained(staging, repo_id=repo_id, final_dir=folder)
        if push_to_hub:
            return self.push_to_hub(repo_id or folder.name, **push_to_hub_kwargs)
        return None

    def _save_pretrained(
        self, save_directory: Path, *, repo_id: str | None = None, final_dir: Path | None = None
    ) -> None:
        """The mixin's hook, and what every model folder is made of: the three files, the card rendered from them
        (and from a ``results.json`` already in ``save_directory``), then the manifest of it all. ``final_dir``:
        where a staging ``save_directory`` will be swapped to (the card names it)."""
        self._save_files(save_directory)
        save_model_card(save_directory, repo_id=repo_id, final_dir=final_dir)
        model = model_provenance(self, local_paths=False)
        write_manifest(save_directory, "model", model=model, arguments={"repo_id": repo_id})

    def _save_files(self, save_directory: Path) -> None:
        """Write ``model.safetensors``, ``config.json`` and ``vocab.json``, each atomically (no card)."""
        vocab = self._require_vocab()
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        with atomic_path(save_directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "library": LIBRARY_NAME})
        vocab.save(save_directory / VOCAB_NAME)
        self.config.save(save_directory / CONFIG_NAME)

    def push_to_hub(self, repo_id: str, **options: Any) -> str:  # type: ignore[override]
        """Upload the model and its card to the Hub repo ``repo_id`` in one commit: huggingface_hub's own
        :meth:`~huggingface_hub.ModelHubMixin.push_to_hub` (it saves the folder with :meth:`save_pretrained` and
        uploads it), the card's usage snippet naming ``repo_id``.

        For the weights stored in another dtype, a folder's ``results.json`` and pictures, or a pretrained name or
        checkpoint as the source, use :func:`lstm_interp.push_to_hub`.

        Args:
            repo_id: ``"org/name"``.
            options: the mixin's: ``commit_message``, ``private``, ``token``, ``branch``, ``create_pr``,
                ``allow_patterns``, ``ignore_patterns``, ``delete_patterns``, ``model_card_kwargs``.

        Returns:
            The URL of the commit.
        """
        card = dict(options.pop("model_card_kwargs", None) or {})
        card.setdefault("repo_id", repo_id)
        return super().push_to_hub(repo_id, model_card_kwargs=card, **options)

    # ------------------------------------------------------------------ load
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[Model],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
    ) -> Model:
        """Load a model saved with :meth:`save_pretrained`, from a local folder or a Hub repo id.

        A folder is read here; a repo id is downloaded through huggingface_hub's cache by
        :func:`lstm_interp.models.hub_files.hub_files`. Weights stored in another floating dtype (float16, say) are cast
        to the model's float32 parameters. (:func:`lstm_interp.load_pretrained` also opens pretrained names and
        Lightning ``.ckpt`` files.)

        Raises:
            RepoUnavailableError: (a ``FileNotFoundError``) if the Hub repo or revision does not exist or is not
                accessible, or the Hub cannot be reached (or ``HF_HUB_OFFLINE`` is set) and the file is not cached.
            FileNotFoundError: if the folder, or one of the three files in the folder or repo, is missing (the
                message names the file and the folder or repo).
            ConfigError | VocabularyError: if ``config.json`` / ``vocab.json`` is malformed or from another version.
            ValueError: if ``model.safetensors`` is truncated, corrupted, or does not fit the config.
            ManifestError: (a ``ValueError``) if the folder's or repo's ``manifest.json`` lists other sha256 for
                the three files than they have (a mixed or hand-edited folder); the message names the files.
        """
        source = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(source):
            paths = [Path(source) / name for name in MODEL_FILES]
            for name, path in zip(MODEL_FILES, paths, strict=True):
                if not path.is_file():
                    raise FileNotFoundError(f"{name} is missing from the model folder {source!r}")
            model = cls.from_files(*paths, map_location=map_location)
            # After reading: a file that does not parse is reported as such; one that parses but is not the file
            # the folder was saved with (two savers mixed it, or a hand edit) is caught here.
            verify_manifest(source, MODEL_FILES)
            model.source = {"folder": os.path.abspath(source)}
            return model
        if os.path.exists(source):
            raise NotADirectoryError(
                f"{source!r} is a file, expected a model folder written by save_pretrained or a Hub repo id "
                "(lstm_interp.load_pretrained also opens Lightning .ckpt files)"
            )
        if os.path.sep in source and source.count("/") != 1:
            raise FileNotFoundError(f"model folder {source!r} does not exist")
        files = hub_files(
            source,
            MODEL_FILES,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        origin = f"Hub repo {source!r} (revision {revision or 'main'!r})"
        snapshot = files[CONFIG_NAME].parent  # <cache>/models--org--name/snapshots/<commit>/
        model = cls.from_files(*(files[name] for name in MODEL_FILES), map_location=map_location, origin=origin)
        manifest = _hub_manifest(source, revision, cache_dir, local_files_only, token)
        if manifest is not None:
            verify_manifest(manifest.parent, MODEL_FILES, paths=files, origin=origin)
        model.source = {"repo_id": source, "revision": snapshot.name}
        return model

    @classmethod
    def from_files(
        cls: type[Model],
        config_path: str | os.PathLike,
        vocab_path: str | os.PathLike,
        weights_path: str | os.PathLike,
        *,
        map_location: str | torch.device = "cpu",
        origin: str | None = None,
    ) -> Model:
        """Build a model from its three files, given by path; returned in eval mode on ``map_location``.

        Args:
            config_path, vocab_path, weights_path: ``config.json``, ``vocab.json``, ``model.safetensors``.
            map_location: the device to load the weights onto.
            origin: where the files came from, for the error messages (``"Hub repo 'org/x' (revision 'main')"``);
                by default the messages name the files' paths alone.

        Raises:
            ConfigError | VocabularyError: if ``config.json`` / ``vocab.json`` is malformed or from another version.
            ValueError: if ``model.safetensors`` is truncated, corrupted, or does not fit the config.
        """
        try:
            config = CharLSTMConfig.load(config_path)
            vocab = CharVocab.load(vocab_path)
        except (ConfigError, VocabularyError) as err:
            if origin is None:  # the message already names the file in the folder
                raise
            raise type(err)(f"{origin}: {err}") from err
        model = cls(config, vocab)
        weights = repr(os.fspath(weights_path))
        if origin is not None:
            weights = f"{WEIGHTS_NAME} of {origin} (cached at {weights})"
        try:
            state = load_file(os.fspath(weights_path), device=str(map_location))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"weights file {weights} is corrupted or truncated: {err}") from err
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"weights file {weights} does not match {CONFIG_NAME}: {err}") from err
        model.to(map_location)
        model.eval()
        return model


def _hub_manifest(
    repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None, local_files_only: bool, token: Any
) -> Path | None:
    """The cached ``manifest.json`` of a Hub repo, or ``None`` if the repo has none (pushed by an older version) or
    it cannot be had now (offline and not cached: the model files alone are then all there is to check)."""
    try:
        return hub_files(
            repo_id,
            [MANIFEST_NAME],
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )[MANIFEST_NAME]
    except FileNotFoundError:
        return None
