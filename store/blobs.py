"""Content-addressed attachment storage under the data folder: the sha256 is the key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store bytes (idempotent: the same content is written once) and return its key."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        made = [d for d in (target.parent.parent, target.parent) if not d.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        # The rename (and any folder just made) is on disk only once its folder is synced;
        # the row that names this blob is committed after this returns.
        for folder in (target.parent, *(d.parent for d in reversed(made))):
            _fsync_dir(folder)
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
