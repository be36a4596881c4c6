"""One complete run per output folder: held by one run at a time, outputs published together.

:class:`RunFolder` is how ``python composite.py`` uses its ``out_dir``:

1. it holds the folder (:func:`cloudseg.run_folder.exclusive_folder`, a ``filelock`` lock): a
   second run into the same folder stops at once with the pid and command of the first;
2. it finishes a publication a killed run had started (see 4), removes temporary folders of
   killed runs and hands out a fresh staging folder ``<out_dir>/.staging/``;
3. the run writes every output there: rasters, baselines, pictures, metrics, ``run.json``;
4. when the run has finished, :meth:`RunFolder.publish` moves the staged outputs into the folder,
   replacing the previous run's, and removes what the previous run published and this one did
   not (recorded under ``published`` in each ``run.json``). The list of moves is written first
   (``.staging/.publishing.json``); ``run.json``, the mark of a finished run, is taken away
   first and put back last, so the folder reads as one complete run (its ``run.json`` agrees
   with every file) or as mid-publication (no ``run.json``, for milliseconds, finished by the
   next run if a kill hits exactly then), never as a mix;
5. a run that fails or is killed before 4 leaves the previous complete run untouched.

Paths the run wrote into its records (JSON, Markdown, HTML under the staging folder) name the
staging folder; :func:`relocate_records` rewrites them to the published place before the move.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

from cloudseg.run_folder import exclusive_folder, remove_leftovers
from composite.outputs import RUN_JSON, write_json

log = logging.getLogger(__name__)

STAGING = ".staging"
JOURNAL = ".publishing.json"
REPLACED = ".replaced"
#: Text records whose paths are rewritten from the staging folder to the published one.
RECORD_SUFFIXES = frozenset({".json", ".md", ".html"})


class RunFolder:
    """``with RunFolder(out_dir, work_dir) as folder:`` write into ``folder.staging`` (window
    files under ``folder.work_dir``), then ``folder.publish()``; see the module docstring.
    ``wait_s``: how long to wait for another run holding the folders (0: refuse at once)."""

    def __init__(
        self, out_dir: str | os.PathLike, work_dir: str | os.PathLike, wait_s: float = 0.0
    ) -> None:
        self.out_dir = Path(out_dir)
        self.staging = self.out_dir / STAGING
        #: This out_dir's own work folders (one per run key) under ``work_dir``: runs into two
        #: out_dirs never share one, even with the same settings.
        self.work_dir = (
            Path(work_dir) / hashlib.sha256(str(self.out_dir.resolve()).encode()).hexdigest()[:12]
        )
        self.wait_s = wait_s
        self._held = ExitStack()

    def __enter__(self) -> RunFolder:
        self._held.enter_context(
            exclusive_folder(self.out_dir, f"out_dir={self.out_dir}", self.wait_s)
        )
        self._held.enter_context(
            exclusive_folder(self.work_dir, f"work folder {self.work_dir}", self.wait_s)
        )
        try:
            finish_publication(self.out_dir)
            remove_leftovers(self.out_dir)
            shutil.rmtree(self.staging, ignore_errors=True)  # a run killed before publishing
            self.staging.mkdir()
        except BaseException:
            self._held.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if not (self.staging / JOURNAL).exists():  # not published: the previous run stays
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._held.close()

    def published(self, staged: str | os.PathLike) -> Path:
        """Where a path under the staging folder lies once published."""
        return self.out_dir / Path(staged).relative_to(self.staging)

    def publish(self) -> list[str]:
        """Publish the staged run (it must hold ``run.json``); returns the published names."""
        run_json = self.staging / RUN_JSON
        if not run_json.is_file():
            raise FileNotFoundError(f"{run_json} is missing: the staged run is not finished.")
        relocate_records(self.staging, self.out_dir)
        names = sorted(path.name for path in self.staging.iterdir() if path.name != REPLACED)
        record = json.loads(run_json.read_text())
        record["published"] = names
        write_json(run_json, record)
        previous = published_names(self.out_dir)
        journal = {"install": names, "remove": sorted(set(previous) - set(names))}
        write_json(self.staging / JOURNAL, journal)
        finish_publication(self.out_dir)
        return names


def published_names(out_dir: Path) -> list[str]:
    """The names the run now in ``out_dir`` published (``run.json``'s ``published``; for a run
    from before publication existed, its ``outputs``); ``[]`` without a readable ``run.json``."""
    try:
        record = json.loads((out_dir / RUN_JSON).read_text())
    except (OSError, ValueError):
        return []
    if "published" in record:
        return list(record["published"])
    return [name for name in record.get("outputs", {}).values() if name]


def finish_publication(out_dir: Path) -> None:
    """Carry out (or finish, after a kill) the publication journaled in ``out_dir``'s staging
    folder; nothing when there is none. Every step can run again after an interruption."""
    staging = out_dir / STAGING
    try:
        journal = json.loads((staging / JOURNAL).read_text())
    except (OSError, ValueError):
        return
    replaced = staging / REPLACED
    replaced.mkdir(exist_ok=True)
    (out_dir / RUN_JSON).unlink(missing_ok=True)  # from here on the folder reads as unfinished
    for name in journal["remove"]:
        _set_aside(out_dir / name, replaced / name)
    for name in journal["install"]:
        staged = staging / name
        if name == RUN_JSON or not staged.exists():  # run.json last; others maybe done already
            continue
        _set_aside(out_dir / name, replaced / name)
        os.replace(staged, out_dir / name)
    if (staging / RUN_JSON).exists():
        os.replace(staging / RUN_JSON, out_dir / RUN_JSON)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("Published %d outputs in %s.", len(journal["install"]), out_dir)


def _set_aside(path: Path, aside: Path) -> None:
    """Move ``path`` (file or folder, if there) to ``aside``, replacing what is there."""
    if path.exists() or path.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(path, aside)


def relocate_records(staging: Path, out_dir: Path) -> None:
    """Rewrite the staging folder's path to ``out_dir`` in the text records under ``staging``."""
    replacements = []
    for old, new in ((staging, out_dir), (staging.resolve(), out_dir.resolve())):
        replacements.append((str(old), str(new)))
        replacements.append((json.dumps(str(old))[1:-1], json.dumps(str(new))[1:-1]))
    for path in staging.rglob("*"):
        if path.suffix not in RECORD_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        relocated = text
        for old, new in replacements:
            relocated = relocated.replace(old, new)
        if relocated != text:
            path.write_text(relocated)
