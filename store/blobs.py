"""Content-addressed attachment storage, the sha256 the key: in a folder (`BlobStore`, the
embedded default), or in the database (`DatabaseBlobs`, PostgreSQL's default: every node
reads every attachment). Both take the caller's transaction, which the folder ignores."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from maild.errors import NotFound
from store.unit import Database, Tx


class BlobStore:
    ahead = True  # worth writing before the processing transaction (see inbound.process)

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes, tx: Tx | None = None) -> str:
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

    def get(self, sha256: str, tx: Tx | None = None) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"attachment content {sha256} is not in {self.root} (stored on "
                           "another node? see [storage] attachments)") from None


class DatabaseBlobs:
    """Attachments in the `blobs` table, written in the caller's transaction (so they commit
    with the rows that name them), or in one of their own."""

    ahead = False  # written with the workunit: nothing to gain ahead of it

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, data: bytes, tx: Tx | None = None) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if tx is not None:
            tx.blobs.put(digest, data)
        else:
            with self.db.write() as own:
                own.blobs.put(digest, data)
        return digest

    def get(self, sha256: str, tx: Tx | None = None) -> bytes:
        if tx is None:
            with self.db.read() as own:
                data = own.blobs.get(sha256)
        else:
            data = tx.blobs.get(sha256)
        if data is None:
            raise NotFound(f"attachment content {sha256} is not in the database")
        return data


Blobs = BlobStore | DatabaseBlobs


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
