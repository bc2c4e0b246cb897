"""Load a pretrained model by short name, Hub repo id or folder, with a bundled copy for when the Hub is out of reach.

The two pretrained models are published on the Hugging Face Hub and also ship inside the wheel (the package
``lstm_interp.pretrained``, the repository's ``model_cards/``), one folder each:

=====================================  ============================================  ===========
short names                            Hub repo                                      bundled as
=====================================  ============================================  ===========
``"novel"``, ``"war-and-peace"``       ``lstm-interp/char-lstm-war-and-peace``       ``novel/``
``"code"``, ``"linux"``                ``lstm-interp/char-lstm-linux-kernel``        ``code/``
=====================================  ============================================  ===========

Downloads go through huggingface_hub's :func:`~huggingface_hub.hf_hub_download` and its cache, so its environment
variables apply: ``HF_ENDPOINT`` (another Hub, or a mirror), ``HF_HUB_OFFLINE=1`` (cache only), ``HF_TOKEN``
(private repos), ``HF_HOME`` / ``HF_HUB_CACHE`` (where the cache lives). Only ``model.safetensors`` is ever read for
weights: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lstm_interp.models.char_lstm import CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME, CharLSTM, RepoUnavailableError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

logger = logging.getLogger("lstm_interp")

# The one table of pretrained models: canonical short name -> Hub repo id (the bundled folder has the short name).
PRETRAINED: dict[str, str] = {
    "novel": "lstm-interp/char-lstm-war-and-peace",
    "code": "lstm-interp/char-lstm-linux-kernel",
}
# Other names for the same models.
ALIASES: dict[str, str] = {"war-and-peace": "novel", "linux": "code"}
# The package whose folders hold the bundled copies.
BUNDLED_PACKAGE = "lstm_interp.pretrained"
# Where the bundled copies are looked for: None means the folder of BUNDLED_PACKAGE. Set it to a directory (holding
# ``novel/``, ``code/``) to use other copies, as the tests do.
BUNDLED_ROOT: str | os.PathLike | None = None

_MODEL_FILES = (CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME)


def load_pretrained(
    name_or_repo_or_path: str | os.PathLike,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    dtype: torch.dtype = torch.float32,
) -> CharLSTM:
    """Load a :class:`~lstm_interp.CharLSTM`: a pretrained one by short name, any Hub repo, or a saved folder.

    A short name (``"novel"``, ``"war-and-peace"``, ``"code"``, ``"linux"``) downloads the official Hub repo; when
    the Hub cannot be reached (or ``HF_HUB_OFFLINE`` is set) with nothing cached, or does not hold the repo, it
    loads the copy bundled with the package instead and logs one warning line on the ``"lstm_interp"`` logger
    saying so. A repo id or a path never falls back: its errors are raised. The model is returned in eval mode.

    Args:
        name_or_repo_or_path: a short name, an ``"org/name"`` Hub repo id, or a folder written by
            ``save_pretrained`` (a string naming an existing folder, or any ``os.PathLike``: pass
            ``Path("novel")`` for a folder named like a short name).
        revision: branch, tag or commit of a Hub repo (default ``"main"``). Given for a short name, it disables
            the fallback: the bundled copy is one particular revision.
        token: Hub token for private repos (default: ``HF_TOKEN`` or the saved login, as huggingface_hub does).
        cache_dir: the huggingface_hub cache to use (default: ``HF_HUB_CACHE``).
        local_files_only: read only from the cache, never from the network (``HF_HUB_OFFLINE=1`` does the same).
        dtype: floating dtype of the returned parameters; the published weights are stored as float16 and are
            returned as float32 by default.

    Raises:
        RepoUnavailableError: (a ``FileNotFoundError``) for a repo id whose repo or revision does not exist or is
            not accessible, or that is not cached while the Hub cannot be reached; or for a short name whose
            bundled copy is missing too.
        FileNotFoundError: if a folder does not exist, or a file is missing from the folder or the repo (the
            message names the file and the repo or folder).
        ValueError: for an unknown bare name or a non-floating ``dtype``; for a corrupted or truncated
            ``model.safetensors``; ``ConfigError`` for a ``config.json`` from a newer, unsupported
            ``format_version`` (all name the repo and file).

    Example::

        >>> model = load_pretrained("novel")  # doctest: +SKIP
        >>> model.generate("The prince ", 100, temperature=0.7, seed=0)  # doctest: +SKIP
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    hub_options: dict[str, Any] = {"token": token, "cache_dir": cache_dir, "local_files_only": bool(local_files_only)}
    source = name_or_repo_or_path
    name = None if isinstance(source, os.PathLike) else ALIASES.get(source.lower(), source.lower())
    if name in PRETRAINED:
        model = _load_short_name(name, revision, hub_options)
    elif isinstance(source, os.PathLike) or os.path.isdir(source):
        if not os.path.isdir(source):
            raise FileNotFoundError(f"model folder {os.fspath(source)!r} does not exist")
        if revision is not None:
            raise ValueError(f"`revision` applies to Hub repos, got revision={revision!r} for the folder {source!r}")
        model = CharLSTM.from_pretrained(source)
    elif _looks_like_repo_id(source):
        model = CharLSTM.from_pretrained(source, revision=revision or "main", **hub_options)
    elif "/" in source or os.sep in source or source.startswith((".", "~")):
        raise FileNotFoundError(f"model folder {source!r} does not exist")
    else:
        names = ", ".join(repr(n) for n in [*PRETRAINED, *ALIASES])
        raise ValueError(
            f"unknown pretrained model {source!r}: expected one of {names}, an 'org/name' Hub repo id, or a folder"
        )
    return model.to(dtype)


def _looks_like_repo_id(source: str) -> bool:
    """``"org/name"``: exactly one slash, not a relative or home path."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and "\\" not in source


def _load_short_name(name: str, revision: str | None, hub_options: dict[str, Any]) -> CharLSTM:
    repo_id = PRETRAINED[name]
    try:
        return CharLSTM.from_pretrained(repo_id, revision=revision or "main", **hub_options)
    except RepoUnavailableError as err:
        if revision is not None:
            raise
        hub_error = err
    with _bundled_folder(name) as folder:
        if folder is None:
            raise RepoUnavailableError(
                f"{hub_error}; and this installation bundles no copy of {name!r} (looked in {_bundled_root()})"
            ) from hub_error
        reason = " ".join(str(hub_error).split())
        if len(reason) > 240:
            reason = reason[:239] + "…"
        logger.warning(
            "Hub repo %r unavailable (%s); loading the copy of %r bundled with lstm_interp from %s",
            repo_id,
            reason,
            name,
            folder,
        )
        return CharLSTM.from_pretrained(folder)


def _bundled_root() -> str:
    if BUNDLED_ROOT is not None:
        return str(BUNDLED_ROOT)
    try:
        return str(resources.files(BUNDLED_PACKAGE))
    except ModuleNotFoundError:
        return f"the package {BUNDLED_PACKAGE} (not installed)"


@contextlib.contextmanager
def _bundled_folder(name: str) -> Iterator[Path | None]:
    """The bundled folder of ``name`` as a real directory (copied out of a zipped install), or ``None``."""
    if BUNDLED_ROOT is not None:
        root: Traversable = Path(BUNDLED_ROOT)
    else:
        try:
            root = resources.files(BUNDLED_PACKAGE)
        except ModuleNotFoundError:
            yield None
            return
    folder = root / name
    if not all((folder / file).is_file() for file in _MODEL_FILES):
        yield None
    elif isinstance(folder, Path):
        yield folder
    else:  # a zip import: copy the three files to a real folder for safetensors
        with tempfile.TemporaryDirectory(prefix=f"lstm_interp_{name}_") as tmp:
            for file in _MODEL_FILES:
                (Path(tmp) / file).write_bytes((folder / file).read_bytes())
            yield Path(tmp)
