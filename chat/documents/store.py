"""The rows of a room's documents and uploads, who may touch them, and the limits. Storage
level and synchronous, like `chat.rooms` (async callers wrap it with `database_sync_to_async`).

Who: everyone who may enter the room sees its documents (they see the passages cited in its
answers anyway); its owner, moderators and staff (`Access.may_moderate`) upload, replace and
delete them, and see the uploads in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from chat.identity import Identity
from chat.models import Document, DocumentUpload, Room
from chat.protocol import ProtocolError
from chat.rooms import Access, access_and_room, access_to
from chat.rooms.configuration import ROOM_COLLECTION_PREFIX
from chat.storage import iso

# An upload whose job has not reported progress for this long died with its worker.
STALE_AFTER: Final = timedelta(minutes=5)
# Uploads listed to moderators: the running ones and those that ended in the last minutes.
RECENT: Final = timedelta(minutes=10)
MAX_UPLOADS_LISTED: Final = 20


def collection_name(room: str) -> str:
    """The room's own Chroma collection: valid for Chroma (3-63 characters of A-Z a-z 0-9 . _ -,
    alphanumeric at both ends) whatever the room's name, and distinct for every room (a hash of
    the exact name; room names differ in case)."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", room).strip("-")[:40] or "room"
    digest = hashlib.sha256(room.encode()).hexdigest()[:10]
    return f"{ROOM_COLLECTION_PREFIX}{readable}-{digest}"


def document_info(document: Document) -> dict[str, Any]:
    """A document as the API lists it and `document.added` carries it."""
    return {
        "name": document.name,
        "size": document.size,
        "chunks": document.chunks,
        "user": {"id": document.user_id, "name": document.user_name},
        "created": iso(document.created),
        "updated": iso(document.updated),
    }


def upload_info(upload: DocumentUpload) -> dict[str, Any]:
    """An upload and how far it got (what the page polls)."""
    info: dict[str, Any] = {
        "id": upload.id,
        "name": upload.name,
        "size": upload.size,
        "status": upload.status,
        "progress": round(upload.progress, 3),
        "user": {"id": upload.user_id, "name": upload.user_name},
        "created": iso(upload.created),
    }
    if upload.status == DocumentUpload.Status.DONE:
        info["chunks"] = upload.chunks
    if upload.error:
        info["error"] = upload.error
    return info


def _expire_stale(room: Room) -> None:
    DocumentUpload.objects.filter(
        room=room,
        status=DocumentUpload.Status.INDEXING,
        updated__lt=timezone.now() - STALE_AFTER,
    ).update(
        status=DocumentUpload.Status.FAILED,
        error="Indexing stopped (the server restarted); upload the file again.",
    )


def listing(name: str, identity: Identity) -> dict[str, Any]:
    """`GET /api/rooms/<room>/documents`: the room's documents, for whoever may enter it; and
    the recent uploads, for its moderators. `not_found` for anyone else."""
    access, room = access_and_room(name, identity)
    access.check_enter()
    listed: dict[str, Any] = {"documents": [], "shared": True}
    if room is None:
        return listed
    listed["documents"] = [document_info(d) for d in Document.objects.filter(room=room)]
    listed["shared"] = room.use_shared_knowledge
    if access.may_moderate:
        _expire_stale(room)
        uploads = DocumentUpload.objects.filter(
            room=room, created__gte=timezone.now() - RECENT
        ).order_by("-created")[:MAX_UPLOADS_LISTED]
        listed["uploads"] = [upload_info(u) for u in uploads]
    return listed


def check_may_upload(name: str, identity: Identity) -> Access:
    """For the transports, before they read a byte of the upload: `not_found` or `forbidden`
    for whoever may not upload to the room (its owner, moderators and staff may)."""
    access, _ = access_and_room(name, identity)
    access.check_moderate()
    return access


def check_size(size: int) -> None:
    """`too_long` (413) for a file over CHAT_DOCUMENT_MAX_BYTES; `invalid` for an empty one."""
    limit = settings.CHAT_DOCUMENT_MAX_BYTES
    if size > limit:
        raise ProtocolError(
            "too_long", f"A document may be at most {_megabytes(limit)}; this one is larger."
        )
    if size <= 0:
        raise ProtocolError("invalid", "The file is empty.")


def _megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size // 1024} KB"
    return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")


@dataclass(frozen=True, slots=True)
class NewUpload:
    """An upload admitted: its row's id, the room's collection, and whether it replaces a
    document of the same name."""

    id: str
    room: str
    name: str
    size: int
    collection: str
    replaces: bool
    user: dict[str, str]


def check_upload(room_name: str, identity: Identity, name: str, size: int) -> None:
    """`begin_upload`'s checks without its writes: run before the file's content is read."""
    with contextlib.suppress(_Checked):
        begin_upload(room_name, identity, name, size, admit=False)


class _Checked(Exception):
    """Rolls back a `begin_upload(admit=False)` whose checks passed."""


def begin_upload(
    room_name: str, identity: Identity, name: str, size: int, *, admit: bool = True
) -> NewUpload:
    """Admit an upload of `name` (`size` bytes) to the room: permission, the room's limits
    (replacing a document counts its new size instead of its old one), one upload of a name at
    a time. Makes the room's row and names its collection if it has none yet."""
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(name=room_name).first()
        access_to(room, room_name, identity).check_moderate()
        if room is None:
            room, _ = Room.objects.get_or_create(name=room_name)
        _expire_stale(room)
        if DocumentUpload.objects.filter(
            room=room, name=name, status=DocumentUpload.Status.INDEXING
        ).exists():
            raise ProtocolError(
                "conflict", f"{name} is being indexed already; wait until it is done."
            )
        documents = Document.objects.filter(room=room)
        current = documents.filter(name=name).first()
        pending = DocumentUpload.objects.filter(room=room, status=DocumentUpload.Status.INDEXING)
        count = documents.count() + pending.count() + (0 if current else 1)
        if count > settings.CHAT_ROOM_DOCUMENTS:
            raise ProtocolError(
                "limit_reached",
                f"This room has its {settings.CHAT_ROOM_DOCUMENTS} documents already; "
                "delete one first.",
            )
        total = (documents.aggregate(total=Sum("size"))["total"] or 0) + (
            pending.aggregate(total=Sum("size"))["total"] or 0
        )
        total += size - (current.size if current else 0)
        if total > settings.CHAT_ROOM_DOCUMENTS_BYTES:
            raise ProtocolError(
                "limit_reached",
                f"This room's documents may take {_megabytes(settings.CHAT_ROOM_DOCUMENTS_BYTES)}"
                " in all; delete one first.",
            )
        if not admit:
            raise _Checked
        if not room.documents_collection:
            room.documents_collection = collection_name(room_name)
            Room.objects.filter(pk=room.pk).update(documents_collection=room.documents_collection)
        now = timezone.now()
        upload = DocumentUpload.objects.create(
            id=f"up_{secrets.token_hex(12)}",
            room=room,
            name=name,
            size=size,
            user_id=identity.id,
            user_name=identity.name,
            created=now,
            updated=now,
        )
    return NewUpload(
        id=upload.id,
        room=room_name,
        name=name,
        size=size,
        collection=room.documents_collection,
        replaces=current is not None,
        user={"id": identity.id, "name": identity.name},
    )


def report_progress(upload_id: str, progress: float) -> None:
    DocumentUpload.objects.filter(pk=upload_id).update(
        progress=max(0.0, min(1.0, progress)), updated=timezone.now()
    )


def finish_upload(upload: NewUpload, chunks: int) -> tuple[Document, bool]:
    """The upload's passages are written: its document row (new, or the replaced one pointing
    at the new passages) and the upload marked done. Returns the document and whether it
    replaced one."""
    now = timezone.now()
    with transaction.atomic():
        room = Room.objects.get(name=upload.room)
        document, created = Document.objects.update_or_create(
            room=room,
            name=upload.name,
            defaults={
                "size": upload.size,
                "chunks": chunks,
                "upload": upload.id,
                "user_id": upload.user["id"],
                "user_name": upload.user["name"],
                "updated": now,
            },
            create_defaults={
                "size": upload.size,
                "chunks": chunks,
                "upload": upload.id,
                "user_id": upload.user["id"],
                "user_name": upload.user["name"],
                "created": now,
                "updated": now,
            },
        )
        DocumentUpload.objects.filter(pk=upload.id).update(
            status=DocumentUpload.Status.DONE, progress=1.0, chunks=chunks, updated=now
        )
    return document, not created


def fail_upload(upload_id: str, message: str) -> None:
    DocumentUpload.objects.filter(pk=upload_id).update(
        status=DocumentUpload.Status.FAILED, error=message[:300], updated=timezone.now()
    )


def begin_delete(room_name: str, identity: Identity, name: str) -> str:
    """Check that `identity` may delete the room's document `name` and that it exists; returns
    the room's collection (`not_found`, `forbidden` otherwise)."""
    access, room = access_and_room(room_name, identity)
    access.check_moderate()
    if room is None or not Document.objects.filter(room=room, name=name).exists():
        raise ProtocolError("not_found", "This room has no document of that name.")
    return room.documents_collection


def finish_delete(room_name: str, name: str) -> bool:
    """Its passages are gone from the index: the row goes. False if it was gone already."""
    deleted, _ = Document.objects.filter(room__name=room_name, name=name).delete()
    return deleted > 0
