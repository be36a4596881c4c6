"""Digests of file contents: what caches and records are keyed by (content, never path or time)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The default digest: BLAKE2b with a 128-bit output (fast, and plenty against accidents).
BLAKE2B_128 = "blake2b-128"


def file_digest(path: str | os.PathLike, algorithm: str = BLAKE2B_128) -> str:
    """Hex digest of a file's bytes: :data:`BLAKE2B_128`, or any :mod:`hashlib` name
    (``"sha256"`` for checkpoints, whose sha256 is recorded in runs)."""
    new = (lambda: hashlib.blake2b(digest_size=16)) if algorithm == BLAKE2B_128 else algorithm
    with open(path, "rb") as file:
        return hashlib.file_digest(file, new).hexdigest()


def folder_digest(folder: str | os.PathLike) -> str:
    """:data:`BLAKE2B_128` over every file below ``folder``: each one's path relative to the
    folder and its content digest, in sorted order (moving the folder keeps it; editing,
    adding, removing or renaming a file changes it)."""
    folder = Path(folder)
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()
