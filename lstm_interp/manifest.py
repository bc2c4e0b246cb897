"""``manifest.json``: what made an output folder, and the sha256 of every file in it.

Every folder lstm_interp writes (a saved model, an analysis, the activation monitor's records, a model card folder)
holds a small ``manifest.json``:

.. code-block:: json

    {"format": "lstm_interp.manifest", "format_version": 1, "kind": "analysis",
     "lstm_interp_version": "0.1.0", "created": "2026-12-01T10:00:00+00:00",
     "model": {"class": "CharLSTM", "config_sha256": "…", "weights_sha256": "…",
               "source": {"repo_id": "lstm-interp/char-lstm-novel", "revision": "0d1f…"}},
     "texts": {"text": {"length": 20000, "sha256": "…"}},
     "arguments": {"features": null, "top": 10},
     "files": {"cells.json": "…", "figures/gate_saturation.png": "…", "report.html": "…"}}

It is written last, into the folder being built (:func:`lstm_interp._io.atomic_folder`), so it describes exactly the
files that were swapped into place together. :func:`verify_manifest` is what a loader calls: a model folder whose
weights, vocabulary or config no longer match its manifest (mixed by two writers under an older version, or edited
by hand) is refused with the names of the files that disagree. :func:`check_replaceable` keeps a whole-folder write
from replacing a folder that holds someone else's files.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lstm_interp._io import atomic_write_text, read_json_file

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "lstm_interp.manifest"
MANIFEST_FORMAT_VERSION = 1
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """A folder's files disagree with its ``manifest.json``, or the manifest itself is malformed."""


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_provenance(text: str) -> dict[str, Any]:
    """``{"length": characters, "sha256": of the UTF-8 bytes}``: enough to tell whether two runs read the same text."""
    return {"length": len(text), "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}


def model_provenance(model: torch.nn.Module, *, local_paths: bool = True) -> dict[str, Any]:
    """What identifies a network: its class, the sha256 of its config and of its weights, and where it came from.

    ``config_sha256`` hashes the config's canonical JSON (a ``config`` attribute with ``to_dict()``, as
    :class:`~lstm_interp.CharLSTM` has); ``weights_sha256`` hashes every tensor of the state dict (name, dtype,
    shape and bytes), so two models agree only if their weights are bitwise equal. ``source`` is what the loader
    recorded (:func:`lstm_interp.load_pretrained` sets ``model.source``: a repo id and revision, a folder, a
    checkpoint), or ``None`` for a model built in this process. ``local_paths=False`` leaves a folder or checkpoint
    path out (it means nothing in a model folder published elsewhere); a repo id and revision stay.
    """
    info: dict[str, Any] = {"class": type(model).__name__}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        info["config_sha256"] = _json_sha256(config.to_dict())
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{str(tensor.dtype).removeprefix('torch.')}:{list(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    info["weights_sha256"] = digest.hexdigest()
    source = getattr(model, "source", None)
    info["source"] = source if local_paths or (source and "repo_id" in source) else None
    return info


def write_manifest(
    folder: str | os.PathLike,
    kind: str,
    *,
    model: torch.nn.Module | Mapping[str, Any] | None = None,
    texts: Mapping[str, str | Mapping[str, Any]] | None = None,
    arguments: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``folder/manifest.json`` listing every file now in ``folder`` (recursively) with its sha256.

    Args:
        folder: the folder, complete but for its manifest.
        kind: what the folder is: ``"model"``, ``"analysis"``, ``"monitor"``, ...
        model: the network (described by :func:`model_provenance`) or an already made description.
        texts: the input texts by role (``{"text": ..., "baseline_text": ...}``), each a string (described by
            :func:`text_provenance`) or a description.
        arguments: the arguments of the run (made JSON-safe: paths and other objects become strings).
        files: hashes already known (relative path -> sha256), reused for files listed there instead of rereading
            them (the monitor's records grow by a few files per recording).

    Returns:
        The manifest's path.
    """
    folder = Path(folder)
    known = dict(files or {})
    listed = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST_NAME:
            continue
        listed[rel] = known.get(rel) or file_sha256(path)
    from lstm_interp._version import __version__

    document = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        "kind": kind,
        "lstm_interp_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": model if model is None or isinstance(model, Mapping) else model_provenance(model),
        "texts": {
            role: text_provenance(value) if isinstance(value, str) else dict(value)
            for role, value in (texts or {}).items()
        },
        "arguments": _json_safe(dict(arguments or {})),
        "files": listed,
    }
    path = folder / MANIFEST_NAME
    atomic_write_text(path, json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    return path


def refresh_manifest(folder: str | os.PathLike) -> Path | None:
    """Rehash the files of a folder that has a manifest after one of them was rewritten in place (a model card, say),
    keeping what it says made the folder; a folder without a manifest is left alone. Returns the manifest's path."""
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    return write_manifest(
        folder,
        manifest.get("kind", "unknown"),
        model=manifest.get("model"),
        texts=manifest.get("texts"),
        arguments=manifest.get("arguments"),
    )


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``folder/manifest.json``, or ``None`` if the folder has none (written by an older version).

    Raises:
        ManifestError: if the file is not a manifest (bad JSON, another format, no ``files`` mapping).
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    document = read_json_file(path, "manifest", ManifestError)
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{str(path)!r} is not an lstm_interp manifest (expected format {MANIFEST_FORMAT!r})")
    if not isinstance(document.get("files"), dict):
        raise ManifestError(f"{str(path)!r} has no 'files' mapping of path to sha256")
    return document


def verify_manifest(
    folder: str | os.PathLike,
    names: Iterable[str],
    *,
    paths: Mapping[str, str | os.PathLike] | None = None,
    origin: str | None = None,
) -> dict[str, Any] | None:
    """Check the files ``names`` of ``folder`` against its manifest; a folder without one passes (older versions).

    Args:
        folder: the folder holding ``manifest.json``.
        names: the files that must match (for a model: ``config.json``, ``vocab.json``, ``model.safetensors``);
            others (a README edited on the Hub, say) are not checked.
        paths: where each file actually is, if not in ``folder`` (files of a Hub repo sit apart in the cache).
        origin: what to call the folder in the message (``"Hub repo 'org/x' (revision 'main')"``).

    Returns:
        The manifest, or ``None``.

    Raises:
        ManifestError: naming every file that is missing from the manifest, missing from the folder, or whose
            sha256 differs, and saying what to do.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    listed: dict[str, str] = manifest["files"]
    problems = []
    for name in names:
        where = Path(paths[name]) if paths and name in paths else Path(folder) / name
        if name not in listed:
            problems.append(f"{name} (not listed)")
        elif not where.is_file():
            problems.append(f"{name} (listed, but missing)")
        elif file_sha256(where) != listed[name]:
            problems.append(f"{name} (sha256 differs)")
    if problems:
        raise ManifestError(
            f"the files of {origin or repr(os.fspath(folder))} disagree with its {MANIFEST_NAME}: "
            f"{', '.join(problems)}. The "
            "folder was mixed by two writers (older lstm_interp wrote its files one by one) or edited by hand; "
            "save the model again, or delete manifest.json if you changed the files on purpose"
        )
    return manifest


def check_replaceable(path: str | os.PathLike, kind: str, owned: Iterable[str], *, overwrite: bool = False) -> None:
    """Refuse, before any work, to replace a folder that holds files a ``kind`` run did not write.

    A whole-folder write replaces ``path`` with what the run made, so a folder is replaceable only if it does not
    exist, is empty, holds nothing but the names in ``owned`` (the files and folders such a run writes: an output of
    an older version, which wrote no manifest), or has a manifest of the same ``kind`` that lists **every** file in it
    with a matching sha256 (a user's ``notes.txt`` added beside an analysis, or a planted ``manifest.json`` in a
    folder of someone's files, is not the run's to delete). Hidden ``.*.tmp`` files are leftovers of our own atomic
    writes and do not count. ``overwrite=True`` (``--overwrite``) replaces any folder.

    Raises:
        NotADirectoryError: if ``path`` is a file.
        FileExistsError: naming ``path``, the first entries that are not such a run's, and how to proceed.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise NotADirectoryError(f"the output folder {str(path)!r} is a file; give a folder (created if missing)")
    entries = sorted(p.name for p in path.iterdir())
    if not entries or overwrite:
        return
    try:
        manifest = read_manifest(path)
    except ManifestError:
        manifest = None
    if manifest is not None and manifest.get("kind") == kind:
        foreign = _not_listed(path, manifest)
    else:
        foreign = [name for name in entries if name not in set(owned) | {MANIFEST_NAME}]
        if manifest is not None:
            foreign = [f"{MANIFEST_NAME} of a {manifest.get('kind')!r} folder", *foreign]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"the output folder {str(path)!r} holds {shown}, which a {kind} run does not write; the folder is "
            "replaced whole, so give a new or empty folder, or one an earlier run of the same kind wrote, or pass "
            "--overwrite (overwrite=True) to replace it anyway"
        )


def _not_listed(folder: Path, manifest: Mapping[str, Any]) -> list[str]:
    """The files of ``folder`` its manifest does not account for: not listed, or changed since they were written."""
    listed = manifest.get("files")
    listed = listed if isinstance(listed, Mapping) else {}
    foreign = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = file.relative_to(folder).as_posix()
        if rel == MANIFEST_NAME or (file.name.startswith(".") and file.name.endswith(".tmp")):
            continue
        if rel not in listed:
            foreign.append(f"{rel} (not in its {MANIFEST_NAME})")
        elif file.is_symlink() or file_sha256(file) != listed[rel]:
            foreign.append(f"{rel} (changed since the run wrote it)")
    return foreign


def _json_sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_json_safe(v) for v in items]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return getattr(value, "name", None) if hasattr(value, "name") and isinstance(value.name, str) else repr(value)
