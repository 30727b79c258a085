"""Attachment contents kept in the database (table `blobs`), by sha256: every node reads them.

Inserting a content already there does nothing (ON CONFLICT DO NOTHING): two mails with the
same file, or two nodes processing at once, store it once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from maild.domain import AttachmentView
from maild.errors import NotFound
from store.models import AttachmentRow, Blob
from store.prepared import Prepared


def _insert(insert: Any) -> Prepared:
    return Prepared(insert(Blob).values(sha256=bindparam("b_sha"), size=bindparam("b_size"),
                                        data=bindparam("b_data"))
                    .on_conflict_do_nothing(index_elements=[Blob.sha256]))


_INSERT = {"sqlite": _insert(sqlite.insert), "postgresql": _insert(postgresql.insert)}
_GET = Prepared(select(Blob.data).where(Blob.sha256 == bindparam("b_sha")))
_ATTACHMENT = Prepared(select(AttachmentRow.id, AttachmentRow.ticket_id,
                              AttachmentRow.filename, AttachmentRow.content_type,
                              AttachmentRow.size, AttachmentRow.sha256)
                       .where(AttachmentRow.id == bindparam("b_id")))


def put(s: Session, sha256: str, data: bytes) -> None:
    _INSERT[s.get_bind().dialect.name].run(s, {"b_sha": sha256, "b_size": len(data),
                                               "b_data": data})


def get(s: Session, sha256: str) -> bytes | None:
    data = _GET.scalar(s, {"b_sha": sha256})
    return None if data is None else bytes(data)


def attachment(s: Session, attachment_id: int) -> tuple[int, AttachmentView]:
    """An attachment (and the id of its ticket)."""
    row = _ATTACHMENT.first(s, {"b_id": attachment_id})
    if row is None:
        raise NotFound(f"no attachment {attachment_id}")
    return int(row.ticket_id), AttachmentView(id=row.id, filename=row.filename,
                                              content_type=row.content_type, size=row.size,
                                              sha256=row.sha256)
