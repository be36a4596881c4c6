"""Output folders used by one run at a time, and what killed runs leave in them.

:func:`exclusive_folder` holds a ``filelock`` lock (``<folder>/.cloudfree.lock``, an OS
``flock``: released by the kernel when the holder dies, so a killed run never leaves a stale
lock) for as long as a run writes there. The lock file holds its owner's pid, start time and
command, so a second run that finds the folder taken says who has it.

While it holds the lock a run is the only writer, so hidden temporary folders
(``tempfile.mkdtemp(prefix=".<name>.")``) and ``*.partial.*`` files (:func:`cloudseg.sentinel2.
cog.atomic_path`) found there are leftovers of killed runs: :func:`remove_leftovers` deletes them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

LOCK_NAME = ".cloudfree.lock"
#: ``tempfile`` names: the prefix, then 8 characters of ``[a-z0-9_]``.
TEMPORARY_FOLDER = re.compile(r"^\..+\.[a-z0-9_]{8}$")
#: ``atomic_path`` names: ``<stem>.partial<suffix>``.
PARTIAL_FILE = re.compile(r"\.partial(\.[A-Za-z0-9]+)?$")


class FolderBusyError(RuntimeError):
    """Another live run holds the folder; the message names its pid and command."""


def _write_owner(fd: int) -> None:
    """Record this process as the lock's holder (filelock's ``on_acquired`` hook)."""
    owner = {
        "pid": os.getpid(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)


def lock_owner(folder: str | os.PathLike) -> str:
    """``pid N (started T): command`` of the run holding ``folder``'s lock, as it recorded."""
    try:
        owner = json.loads((Path(folder) / LOCK_NAME).read_text())
        return f"pid {owner['pid']} (started {owner['started']}): {owner['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, what: str, wait_s: float = 0.0) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for one run; ``what`` names it in messages (e.g.
    ``out_dir=/x``). A folder another run holds raises FolderBusyError naming that run, at once
    (``wait_s=0``) or after waiting ``wait_s`` seconds for it to finish (``-1``: no limit)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, timeout=wait_s, on_acquired=_write_owner)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if wait_s == 0:
                raise
            log.warning(
                "%s is in use by another run (%s); waiting for it.", what, lock_owner(folder)
            )
            lock.acquire()
    except Timeout:
        waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
        raise FolderBusyError(
            f"{what} is in use by another run{waited}: {lock_owner(folder)}. Wait for it to "
            "finish, or write to another folder."
        ) from None
    try:
        yield folder
    finally:
        lock.release()


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary folders and partial files that killed runs left directly in ``folder``;
    call only while holding it (:func:`exclusive_folder`). Returns what was removed."""
    folder = Path(folder)
    removed = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.is_dir() and not path.is_symlink() and TEMPORARY_FOLDER.match(path.name):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and PARTIAL_FILE.search(path.name):
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    if removed:
        log.warning(
            "Removed %d temporary file(s)/folder(s) that killed runs left in %s: %s",
            len(removed), folder, ", ".join(path.name for path in removed),
        )  # fmt: skip
    return removed
