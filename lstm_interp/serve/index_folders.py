"""The removal of the temporary index folders that servers killed before the index cache left behind (issue 21).

Servers used to index their corpora into ``<tempdir>/lstm-interp-serve-*`` (``tempdir`` is
:func:`tempfile.gettempdir`, so ``$TMPDIR`` moves it), removed when the server exited. A server killed with SIGKILL
(or by the kernel's OOM killer) could not remove its folder, and its indexes may be large. Each folder held a marker,
:data:`OWNER_FILE`, with the owner's process id and start time, and every server start still removes the folders
whose owner is gone (:func:`remove_stale_index_folders`). Servers now keep their indexes in the index cache
(:mod:`lstm_interp.analysis.index_cache`), whose entries are written whole. Only folders with our marker are ever
removed: a folder without one (another program's) is left alone, as is one owned by another user or whose owner is
still running (the start time tells a reused process id apart, where ``/proc`` has it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

PREFIX = "lstm-interp-serve-"
OWNER_FILE = "lstm-interp-serve.owner"


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (``/proc/<pid>/stat``, field 22); ``None`` where
    there is no ``/proc`` or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": fields 3.. follow the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _owner_alive(owner: dict[str, object]) -> bool:
    pid, start_time = owner.get("pid"), owner.get("start_time")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return True  # a marker we cannot read is not proof that its owner is gone: keep the folder
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    # The process id may have been reused by a newer process since: compare start times where both are known.
    return start_time is None or process_start_time(pid) in (None, start_time)


def remove_stale_index_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the index folders under ``root`` (default: :func:`tempfile.gettempdir`) whose owner process is gone.

    Only a folder named ``lstm-interp-serve-*``, not a link, owned by this user and holding a readable
    :data:`OWNER_FILE` whose process is not running is removed; anything else is left alone. On Windows, where
    ``os.kill`` would end the process it asks about, nothing is removed.

    Returns:
        the folders removed.
    """
    if sys.platform == "win32":
        return []
    removed = []
    base = Path(tempfile.gettempdir() if root is None else root)
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:  # no temporary folder to look in: nothing of ours is there
        return []
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            owner = json.loads((Path(entry.path) / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no marker (not ours, or not written yet), or one being written
            continue
        if isinstance(owner, dict) and not _owner_alive(owner):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed
