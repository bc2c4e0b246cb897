"""Download files of a Hub repo through huggingface_hub's cache, and say clearly what went wrong when that fails.

This is the one place lstm_interp calls :func:`~huggingface_hub.hf_hub_download` and translates its errors.
huggingface_hub's own messages are long and, with some Hub-compatible servers, misleading (olah answers a missing
*file* with "repository not found"); :func:`hub_files` raises instead:

* :class:`RepoUnavailableError` (a ``FileNotFoundError``) when the repo or the revision does not exist or is not
  accessible (private, gated), or when the file is not cached and the Hub cannot be reached (or ``HF_HUB_OFFLINE``
  is set, or ``local_files_only=True``): what a caller with another copy of the model may fall back from;
* ``FileNotFoundError`` when the repo exists but lacks the file.

Each message names the repo, the file and, where it matters, the revision. huggingface_hub's environment variables
apply: ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``, ``HF_HOME`` / ``HF_HUB_CACHE``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


class RepoUnavailableError(FileNotFoundError):
    """A Hub repo (or revision) that does not exist or is not accessible, or a Hub that cannot be reached while the
    file is not cached. Unlike a file missing from a repo that exists, this is what a fallback may recover from."""


def hub_files(
    repo_id: str,
    filenames: Iterable[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> dict[str, Path]:
    """Local paths of ``filenames`` of the Hub repo ``repo_id``: from the cache, downloaded first if need be.

    Args:
        repo_id: ``"org/name"``.
        filenames: paths inside the repo, fetched in this order (the first failure is raised).
        revision: branch, tag or commit (default ``"main"``).
        cache_dir: the huggingface_hub cache (default ``HF_HUB_CACHE``).
        force_download: download even if cached.
        local_files_only: never use the network, only the cache.
        token: a Hub token (default ``HF_TOKEN`` or the saved login).

    Returns:
        ``{filename: path}``, in the order of ``filenames``.

    Raises:
        RepoUnavailableError: (a ``FileNotFoundError``) if the repo or revision does not exist or is not
            accessible, or a file is not cached while the Hub cannot be reached.
        FileNotFoundError: if the repo exists but lacks a file.

    Example::

        >>> hub_files("lstm-interp/char-lstm-war-and-peace", ["config.json"])  # doctest: +SKIP
        {'config.json': PosixPath('/home/me/.cache/huggingface/hub/models--lstm-interp--.../config.json')}
    """
    return {
        name: _hub_file(repo_id, name, revision, cache_dir, force_download, local_files_only, token)
        for name in filenames
    }


def _hub_file(
    repo_id: str,
    filename: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    force_download: bool,
    local_files_only: bool,
    token: str | bool | None,
) -> Path:
    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        )
    except LocalEntryNotFoundError as err:  # first: it is also an EntryNotFoundError
        raise RepoUnavailableError(
            f"{filename} of Hub repo {repo_id!r} is not cached and the Hub cannot be reached "
            f"(offline, or HF_HUB_OFFLINE set?): {_first_line(err)}"
        ) from err
    except EntryNotFoundError as err:
        raise FileNotFoundError(f"{filename} is missing from the Hub repo {repo_id!r}: {_first_line(err)}") from err
    except GatedRepoError as err:  # first: it is also a RepositoryNotFoundError
        raise RepoUnavailableError(
            f"Hub repo {repo_id!r} is gated: accept its conditions on the Hub and pass a token ({filename})"
        ) from err
    except RevisionNotFoundError as err:
        raise RepoUnavailableError(f"revision {revision!r} not found in Hub repo {repo_id!r} ({filename})") from err
    except RepositoryNotFoundError as err:
        # Some Hub-compatible servers (olah) answer a missing *file* with RepoNotFound: ask about the repo itself.
        found = _repo_status(repo_id, revision, token)
        if found == "file missing":
            raise FileNotFoundError(
                f"{filename} is missing from the Hub repo {repo_id!r} (revision {revision or 'main'!r})"
            ) from err
        if found == "revision missing":
            raise RepoUnavailableError(f"revision {revision!r} not found in Hub repo {repo_id!r} ({filename})") from err
        raise RepoUnavailableError(
            f"Hub repo {repo_id!r} not found, or private and no valid token given (reading {filename}): "
            f"{_first_line(err)}"
        ) from err


def _repo_status(repo_id: str, revision: str | None, token: str | bool | None) -> str:
    """After a RepoNotFound answer: ``"file missing"``, ``"revision missing"`` or ``"repo missing"``."""
    api = HfApi()
    for probe, found in ((revision or "main", "file missing"), ("main", "revision missing")):
        if found == "revision missing" and revision in (None, "main"):
            break
        try:
            api.repo_info(repo_id, revision=probe, token=token)
            return found
        except Exception:  # a best-effort probe: any failure counts as "not found"
            continue
    return "repo missing"


def _first_line(err: BaseException) -> str:
    """The gist of a huggingface_hub error: its first two non-empty lines ("404 Client Error. Entry Not Found ...")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2]) or type(err).__name__
