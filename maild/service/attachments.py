"""An attachment's bytes, by its id: what `maild attachment` and `GET /api/attachments/{id}`
both serve. The row says where the content is (its sha256); the blob store reads it, from the
database (every node) or from this node's folder."""

from __future__ import annotations

import hashlib

from maild.domain import AttachmentView
from maild.errors import StoreError
from store.blobs import Blobs
from store.unit import Tx


def attachment(blobs: Blobs, tx: Tx, attachment_id: int) -> tuple[AttachmentView, bytes]:
    """The attachment's row and its content; NotFound for an unknown id (or a content this
    node cannot read). A content that is not what its row names is refused, never served."""
    _, view = tx.blobs.attachment(attachment_id)
    data = blobs.get(view.sha256, tx)
    if hashlib.sha256(data).hexdigest() != view.sha256:
        raise StoreError(f"attachment {attachment_id}: the stored content does not match its "
                         f"sha256 {view.sha256} (damaged storage)")
    return view, data
