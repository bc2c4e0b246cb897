"""The one way to open a model: a pretrained short name, a saved folder, a Lightning ``.ckpt`` or a Hub repo id.

:func:`load_pretrained` is what the Python API documents and what every ``lstm-interp`` command that takes a MODEL
calls. What the argument is decides how it is read (:func:`source_kind`, in this order):

=====================  =====================================================================================
``"novel"``, ...       a short name (case-insensitive; below): the official Hub repo, else the bundled copy
an existing file       a Lightning checkpoint of a ``CharLSTMModule``, read with ``torch.load(weights_only=True)``
                       and without importing Lightning (:func:`lstm_interp.models.checkpoint.load_checkpoint`)
an existing folder     written by ``save_pretrained``: ``config.json``, ``vocab.json``, ``model.safetensors``
``"org/name"``         a Hub repo id (exactly one slash), downloaded through huggingface_hub's cache
=====================  =====================================================================================

The three pretrained models are published on the Hugging Face Hub and also ship inside the wheel (the package
``lstm_interp.pretrained``, the repository's ``model_cards/``), one folder each:

=====================================  ============================================  ===========
short names                            Hub repo                                      bundled as
=====================================  ============================================  ===========
``"novel"``, ``"war-and-peace"``       ``lstm-interp/char-lstm-war-and-peace``       ``novel/``
``"code"``, ``"linux"``                ``lstm-interp/char-lstm-linux-kernel``        ``code/``
``"foldoc"``                           ``lstm-interp/char-lstm-foldoc``              ``foldoc/``
=====================================  ============================================  ===========

**The offline rule, for short names.** huggingface_hub retries a Hub it cannot connect to for about 20 s before
giving up. A short name has a bundled copy to fall back to, so it does not wait for that: unless ``HF_HUB_OFFLINE``
is set or ``local_files_only=True``, it first makes one quick probe of the endpoint (``HF_ENDPOINT``, default
huggingface.co): a single ``HEAD`` request through huggingface_hub's HTTP client (so proxies and a custom client
apply), with no retry, given :data:`PROBE_TIMEOUT_S` (1 s) in all, name resolution included. If any HTTP answer
comes back, the model is downloaded as usual. If not, the model is read from the cache alone; when it is not cached
either, the bundled copy is loaded and one warning line on the ``"lstm_interp"`` logger says so. A Hub that answers
but lacks the repo also falls back to the bundled copy, with one warning line. A short name given a ``revision``,
a repo id or a path never probes and never falls back: their errors are raised, each naming the repo and the file
(repo or revision not found, file missing, not cached while offline, ...).

Downloads go through huggingface_hub's :func:`~huggingface_hub.hf_hub_download` and its cache
(:mod:`lstm_interp.models.hub_files`), so its environment variables apply: ``HF_ENDPOINT`` (another Hub, or a mirror),
``HF_HUB_OFFLINE=1`` (cache only), ``HF_TOKEN`` (private repos), ``HF_HOME`` / ``HF_HUB_CACHE`` (where the cache
lives). Weights are read from ``model.safetensors`` or with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from huggingface_hub import constants
from huggingface_hub.utils import get_session

from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.models.checkpoint import load_checkpoint
from lstm_interp.models.hub_files import RepoUnavailableError
from lstm_interp.models.model_files import MODEL_FILES, PRETRAINED

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

logger = logging.getLogger("lstm_interp")

SourceKind = Literal["pretrained", "checkpoint", "folder", "repo"]

# Other names for the same models.
ALIASES: dict[str, str] = {"war-and-peace": "novel", "linux": "code"}
# The package whose folders hold the bundled copies.
BUNDLED_PACKAGE = "lstm_interp.pretrained"
# Where the bundled copies are looked for: None means the folder of BUNDLED_PACKAGE. Set it to a directory (holding
# ``novel/``, ``code/``) to use other copies, as the tests do.
BUNDLED_ROOT: str | os.PathLike | None = None
# How long a short name waits for the Hub to answer its one probe before using the cache or the bundled copy: long
# enough for a TLS handshake across a continent, short enough that no network answers in about a second.
PROBE_TIMEOUT_S = 1.0
# The suffix of Lightning checkpoints: a missing file ending so is reported as a missing checkpoint, not a repo id.
CHECKPOINT_SUFFIX = ".ckpt"


def load_pretrained(
    name_or_repo_or_path: str | os.PathLike,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    dtype: torch.dtype = torch.float32,
    map_location: str | torch.device = "cpu",
) -> CharLSTM:
    """Load a :class:`~lstm_interp.CharLSTM`: a pretrained one by short name, a folder, a ``.ckpt`` or a Hub repo.

    A short name (``"novel"``, ``"war-and-peace"``, ``"code"``, ``"linux"``) downloads the official Hub repo; when
    the Hub does not answer a quick probe (or ``HF_HUB_OFFLINE`` is set) and nothing is cached, or the Hub does not
    hold the repo, it loads the copy bundled with the package instead and logs one warning line on the
    ``"lstm_interp"`` logger saying so (the rule is in this module's docstring). A repo id or a path never falls
    back: its errors are raised. The model is returned in eval mode.

    Args:
        name_or_repo_or_path: a short name; a Lightning checkpoint file of a ``CharLSTMModule`` (``.ckpt``); a
            folder written by ``save_pretrained``; or an ``"org/name"`` Hub repo id. Any ``os.PathLike`` is a path:
            pass ``Path("novel")`` for a folder named like a short name.
        revision: branch, tag or commit of a Hub repo (default ``"main"``). Given for a short name, it disables
            the probe and the fallback: the bundled copy is one particular revision.
        token: Hub token for private repos (default: ``HF_TOKEN`` or the saved login, as huggingface_hub does).
        cache_dir: the huggingface_hub cache to use (default: ``HF_HUB_CACHE``).
        local_files_only: read only from the cache, never from the network (``HF_HUB_OFFLINE=1`` does the same).
        dtype: floating dtype of the returned parameters; the published weights are stored as float16 and are
            returned as float32 by default.
        map_location: the device to load the weights onto.

    Raises:
        RepoUnavailableError: (a ``FileNotFoundError``) for a repo id whose repo or revision does not exist or is
            not accessible, or that is not cached while the Hub cannot be reached; or for a short name whose
            bundled copy is missing too.
        FileNotFoundError: if a folder or a ``.ckpt`` file does not exist, or a file is missing from the folder or
            the repo (the message names the file and the repo or folder).
        ValueError: for an unknown bare name, a non-floating ``dtype``, or a ``revision`` for a path; for a
            corrupted or truncated ``model.safetensors``; for a file that is not a checkpoint of a
            ``CharLSTMModule`` (or is truncated, or has no vocabulary); ``ConfigError`` for a ``config.json`` from a
            newer, unsupported ``format_version`` (all name the repo or path and the file).

    Example::

        >>> model = load_pretrained("novel")  # doctest: +SKIP
        >>> model.generate("The prince ", 100, temperature=0.7, seed=0)  # doctest: +SKIP
        >>> load_pretrained("lightning_logs/version_0/checkpoints/best.ckpt")  # doctest: +SKIP
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    source = name_or_repo_or_path
    kind = source_kind(source)
    if kind in ("checkpoint", "folder") and revision is not None:
        raise ValueError(
            f"`revision` applies to Hub repos, got revision={revision!r} for the {kind} {os.fspath(source)!r}"
        )
    hub_options: dict[str, Any] = {
        "token": token,
        "cache_dir": cache_dir,
        "local_files_only": bool(local_files_only),
        "map_location": map_location,
    }
    short_name = _short_name(source)
    if short_name is not None:
        model = _load_short_name(short_name, revision, hub_options)
    elif kind == "checkpoint":
        model = load_checkpoint(source, map_location=map_location)
        model.source = {"checkpoint": os.path.abspath(source)}
    elif kind == "folder":
        model = CharLSTM.from_pretrained(source, map_location=map_location)
    else:
        model = CharLSTM.from_pretrained(source, revision=revision or "main", **hub_options)
    return model.to(dtype)


def source_kind(source: str | os.PathLike) -> SourceKind:
    """What :func:`load_pretrained` takes ``source`` for: ``"pretrained"``, ``"checkpoint"``, ``"folder"``, ``"repo"``.

    Nothing is read: only the name is looked at and the file system asked whether the path exists, so a command
    line can check its MODEL argument before doing any work.

    Raises:
        FileNotFoundError: for a path that does not exist (a ``.ckpt`` name, a ``PathLike``, or a string that can
            only be a path: two slashes or more, a leading ``.``, ``/`` or ``~``).
        ValueError: for a bare name that is not a short name (the message lists them).
        TypeError: for something that is neither a string nor a path.

    Example::

        >>> source_kind("novel"), source_kind("me/my-model")
        ('pretrained', 'repo')
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a model is named by a string or a path, got {type(source).__name__}: {source!r}")
    if _short_name(source) is not None:
        return "pretrained"
    path = os.fspath(source)
    if os.path.isfile(path):
        return "checkpoint"
    if os.path.isdir(path):
        return "folder"
    if path.endswith(CHECKPOINT_SUFFIX):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    if isinstance(source, str) and _looks_like_repo_id(path):
        return "repo"
    if isinstance(source, os.PathLike) or "/" in path or os.sep in path or path.startswith((".", "~")):
        raise FileNotFoundError(f"model folder {path!r} does not exist")
    names = ", ".join(repr(n) for n in [*PRETRAINED, *ALIASES])
    raise ValueError(
        f"unknown pretrained model {path!r}: expected one of {names}, an 'org/name' Hub repo id, a model folder "
        f"or a {CHECKPOINT_SUFFIX} file"
    )


def source_name(source: str | os.PathLike) -> str:
    """A short name for what ``source`` names, for the folders a command writes about it by default: the last part
    of the path or repo id, without ``.ckpt`` (``"model"`` when nothing is left). Nothing is read.

    Raises:
        TypeError: for something that is neither a string nor a path.

    Example::

        >>> source_name("novel"), source_name("runs/best.ckpt"), source_name("me/my-model/")
        ('novel', 'best', 'my-model')
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a model is named by a string or a path, got {type(source).__name__}: {source!r}")
    return Path(os.fspath(source).rstrip("/\\")).name.removesuffix(CHECKPOINT_SUFFIX) or "model"


def _short_name(source: str | os.PathLike) -> str | None:
    """The canonical short name ``source`` stands for (aliases and case folded), or ``None``; paths never do."""
    if not isinstance(source, str):
        return None
    name = ALIASES.get(source.lower(), source.lower())
    return name if name in PRETRAINED else None


def _looks_like_repo_id(source: str) -> bool:
    """``"org/name"``: exactly one slash, not a relative or home path."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and "\\" not in source


def _load_short_name(name: str, revision: str | None, hub_options: dict[str, Any]) -> CharLSTM:
    repo_id = PRETRAINED[name]
    if revision is not None:  # one particular revision: no bundled copy stands in for it, so no probe either
        return CharLSTM.from_pretrained(repo_id, revision=revision, **hub_options)
    unreachable = None
    if not (hub_options["local_files_only"] or _hub_offline()):
        unreachable = _probe_hub(PROBE_TIMEOUT_S)
    try:
        options = {**hub_options, "local_files_only": hub_options["local_files_only"] or unreachable is not None}
        return CharLSTM.from_pretrained(repo_id, revision="main", **options)
    except RepoUnavailableError as err:
        hub_error = err
    # Why the Hub copy is unavailable, in one line: the probe's answer says more than "not cached" does.
    reason = f"{unreachable}, and the model is not cached" if unreachable else " ".join(str(hub_error).split())
    with _bundled_folder(name) as folder:
        if folder is None:
            raise RepoUnavailableError(
                f"Hub repo {repo_id!r} unavailable ({reason}); and this installation bundles no copy of {name!r} "
                f"(looked in {_bundled_root()})"
            ) from hub_error
        if len(reason) > 240:
            reason = reason[:239] + "…"
        logger.warning(
            "Hub repo %r unavailable (%s); loading the copy of %r bundled with lstm_interp from %s",
            repo_id,
            reason,
            name,
            folder,
        )
        model = CharLSTM.from_pretrained(folder, map_location=hub_options["map_location"])
        model.source = {"repo_id": repo_id, "bundled_copy": True}
        return model


def _hub_offline() -> bool:
    """``HF_HUB_OFFLINE``, as huggingface_hub read it when imported."""
    return bool(constants.HF_HUB_OFFLINE)


def _probe_hub(timeout_s: float) -> str | None:
    """``None`` if the Hub endpoint gives any HTTP answer within ``timeout_s``, else a phrase saying why not.

    One ``HEAD`` request, no retry, through huggingface_hub's shared HTTP client (its proxies, certificates and any
    client set with ``set_client_factory`` apply). It runs in a daemon thread that is waited for at most
    ``timeout_s``: the request's own timeout does not cover name resolution, which can hang for longer.
    """
    endpoint = constants.ENDPOINT
    answers: list[str | None] = []

    def probe() -> None:
        try:
            get_session().head(endpoint, timeout=timeout_s)
            answers.append(None)
        except Exception as err:  # any failure to get an HTTP answer means: unreachable
            answers.append(f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}".rstrip(": "))

    thread = threading.Thread(target=probe, name="lstm_interp-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not answers:
        return f"the Hub at {endpoint} did not answer within {timeout_s:g} s"
    if answers[0] is None:
        return None
    return f"the Hub at {endpoint} cannot be reached ({answers[0]})"


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
    if not all((folder / file).is_file() for file in MODEL_FILES):
        yield None
    elif isinstance(folder, Path):
        yield folder
    else:  # a zip import: copy the three files to a real folder for safetensors
        with tempfile.TemporaryDirectory(prefix=f"lstm_interp_{name}_") as tmp:
            for file in MODEL_FILES:
                (Path(tmp) / file).write_bytes((folder / file).read_bytes())
            yield Path(tmp)
