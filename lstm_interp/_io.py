"""Atomic writes of files and whole folders: everything is built beside its target under a temporary name, then
renamed into place.

A crash, a kill or an exception mid-write therefore never leaves a half-written file where a reader expects a whole
one (:func:`atomic_path`), nor a folder holding some files of one run and some of another (:func:`atomic_folder`).
What those writes leave is read back with :func:`read_json_file`, whose errors name the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; a leftover counts as stale once it is a day old
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    try:
        yield tmp
        # Again after the writer: some (safetensors' save_file) recreate the file as 0600, which would leave a
        # shared model folder unreadable to the other users it was meant for.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_json_file(path: str | os.PathLike, what: str, error: type[Exception] = ValueError) -> Any:
    """The parsed JSON of ``path``, or ``error`` naming ``what`` and the file: not UTF-8, not JSON, or nested too
    deeply for Python's parser (``[[[[...]]]]`` thousands deep raises RecursionError, a crash, not a message)."""
    where = f"{what} {str(path)!r}"
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{where} is not valid JSON ({err}); is it truncated?") from err
    except RecursionError:
        raise error(f"{where} is JSON nested too deeply to read; it was not written by lstm_interp") from None


# ------------------------------------------------------------------------------------------------- whole folders
# A folder being built is a hidden sibling of its target, `.<name>.partial-<token>`, next to a lock file
# `.<name>.partial-<token>.lock` that its writer holds (flock) for as long as it lives. The kernel drops the lock when
# the writer dies however it dies, so a later writer can tell a crashed run's leftovers (unlocked) from a concurrent
# writer's folder in progress (locked), and remove only the former.
PARTIAL_MARK = ".partial-"
LOCK_SUFFIX = ".lock"
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder to build ``path`` in; on success it takes ``path``'s place in one step.

    The folder is a hidden sibling of ``path`` (same file system). When the block ends without an exception, it is
    renamed onto ``path``: where ``path`` exists, the two are exchanged atomically (Linux ``renameat2``
    ``RENAME_EXCHANGE``) and the previous folder, now under the temporary name, is deleted. A reader therefore sees
    the previous complete folder or the new complete one, never a mixture; of concurrent writers, the last to finish
    wins whole. On an exception the temporary folder is removed and ``path`` is untouched. Temporaries left by
    crashed or killed writers of the same ``path`` are removed on entry (those of live writers are locked and kept).

    Where the exchange is not supported (not Linux, or a file system without it), the previous folder is renamed
    aside first, so a crash between the two renames can leave no folder at ``path`` (never a mixed one).

    Raises:
        NotADirectoryError: if ``path`` exists and is not a folder.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file, expected a folder (created if missing)")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path.parent, f".{path.name}{PARTIAL_MARK}")
    with _locked_partial(path.parent, f".{path.name}{PARTIAL_MARK}") as tmp:
        yield tmp
        _swap_into_place(tmp, path)


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder under the system's temp dir, removed on exit, whose leftovers after a crash are removed by
    the next :func:`scratch_folder` of the same ``prefix`` (as :func:`atomic_folder` does for its temporaries)."""
    parent = Path(tempfile.gettempdir())
    remove_stale_partials(parent, prefix)
    with _locked_partial(parent, prefix) as tmp:
        yield tmp


def remove_stale_partials(parent: Path, stem: str) -> list[Path]:
    """Remove the folders ``parent/<stem><token>`` whose writer is gone (its lock is free); returns them."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(stem) or entry.name.endswith(LOCK_SUFFIX):
            continue
        lock = entry.with_name(entry.name + LOCK_SUFFIX)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        if not _try_lock(fd, entry):  # a live writer holds it
            os.close(fd)
            continue
        try:
            _remove(entry)
            lock.unlink(missing_ok=True)
            removed.append(entry)
        finally:
            os.close(fd)
    # Lock files whose folder is gone: a writer killed after removing its folder, or before making it.
    for entry in entries:
        if entry.name.startswith(stem) and entry.name.endswith(LOCK_SUFFIX) and not entry.with_suffix("").exists():
            try:
                fd = os.open(entry, os.O_RDWR)
            except OSError:
                continue
            try:
                if _try_lock(fd, entry):
                    entry.unlink(missing_ok=True)
            finally:
                os.close(fd)
    return removed


@contextlib.contextmanager
def _locked_partial(parent: Path, stem: str) -> Iterator[Path]:
    """Make ``parent/<stem><token>`` holding its lock; remove both on exit, whatever happened."""
    while True:
        token = secrets.token_hex(6)
        folder = parent / f"{stem}{token}"
        lock = parent / f"{stem}{token}{LOCK_SUFFIX}"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        if fcntl is None:
            break
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleaner may have taken and unlinked the lock between our open and flock; then start again.
        if os.path.exists(lock) and os.stat(lock).st_ino == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        folder.mkdir(mode=0o777)  # minus the umask, as any folder the user makes
        yield folder
    finally:
        try:
            _remove(folder)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _try_lock(fd: int, entry: Path) -> bool:
    """Take the lock ``fd`` without waiting: True if no live writer holds it (so ``entry`` is a leftover)."""
    if fcntl is None:
        try:
            return time.time() - entry.stat().st_mtime > 86_400
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Put the folder ``tmp`` at ``path``; a previous ``path`` ends up at ``tmp`` (removed by the caller's exit)."""
    if not os.path.lexists(path):
        try:
            if _renameat2(tmp, path, _RENAME_NOREPLACE):
                tmp.mkdir()  # an empty stand-in, so the caller's cleanup has the folder it expects
                return
        except FileExistsError:  # a concurrent writer got there first: exchange with theirs below
            pass
        else:
            try:  # no renameat2: a plain rename, which fails if a concurrent writer made `path` meanwhile
                os.rename(tmp, path)
                tmp.mkdir()
                return
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
    if _renameat2(tmp, path, _RENAME_EXCHANGE):
        return
    aside = tmp.with_name(tmp.name + ".old")
    os.rename(path, aside)
    os.rename(tmp, path)
    os.rename(aside, tmp)


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``: True if done, False if this system or file system cannot do it."""
    libc = _libc()
    if libc is None:
        return False
    if libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), ctypes.c_uint(flags)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(src), None, os.fspath(dst))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.renameat2  # noqa: B018 - glibc >= 2.28
    except (OSError, AttributeError):
        return None
    return libc


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
