"""The HTTP API of a room's documents (docs/documents.md): list, upload, delete. Thin like
the other views: the checks are `chat.documents`'; the same ones on every transport (the page
uses these endpoints, with its session and CSRF token; programs with a bearer token).

An upload is refused before its content is read: permission first (the caller is identified
without Django's CSRF check, which would parse the body; that check runs once the limits
below are in place), then its declared
`Content-Length` against CHAT_DOCUMENT_MAX_BYTES (413; a body without one is refused, as
Django would read it as empty), then, while the multipart body is parsed, an upload handler
that stops the file at the limit (the envelope's slack is not the file's), then the
room's limits for its name and size; only then is the file read, checked and parsed (in a
thread). 202 with the upload's id: it indexes in the background; the page polls the listing.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError

from chat import protocol
from chat.api.auth import authenticate
from chat.api.views import api_view
from chat.background import detached
from chat.documents import files, indexing, store
from chat.protocol import ProtocolError
from chat.runtime import get_runtime

# What a multipart envelope adds to the file it carries (boundaries, headers, the name).
ENVELOPE_BYTES: Final = 64 * 1024
FIELD: Final = "file"

db = database_sync_to_async


def _check_room(room: str) -> None:
    if not protocol.is_room_name(room):
        raise ProtocolError("not_found", "A room name is 1 to 64 characters of A-Z a-z 0-9 _ -.")


class _OneLimitedFile(FileUploadHandler):
    """Stops the multipart parser as soon as the body holds more than one file, or a file
    grows past the limit: the rest is never stored."""

    def __init__(self, limit: int, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = limit
        self.files = 0

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        self.files += 1
        if self.files > 1 or field_name != FIELD:
            raise ProtocolError("invalid", f"Send one file, in the form field `{FIELD}`.")
        super().new_file(field_name, *args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            store.check_size(start + len(raw_data))  # raises too_long
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler stores it


def _declared_length(request: HttpRequest) -> int | None:
    raw = request.headers.get("Content-Length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        raise ProtocolError("invalid", "Content-Length is not a number.") from None


def _parse_upload(request: HttpRequest) -> UploadedFile:
    """The one uploaded file of a multipart body (runs in a thread: parsing reads the body)."""
    try:
        uploaded = request.FILES.get(FIELD)
    except MultiPartParserError:
        raise ProtocolError("invalid", "The multipart body cannot be parsed.") from None
    if uploaded is None:
        raise ProtocolError("invalid", f"Send one file, in the form field `{FIELD}`.")
    return uploaded


def _read_all(uploaded: UploadedFile) -> bytes:
    try:
        uploaded.seek(0)
        return uploaded.read()
    finally:
        uploaded.close()


@api_view("GET", "POST")
async def room_documents(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>/documents`: the room's documents (and, for moderators, the
    uploads in progress). `POST` (multipart, field `file`): upload one; 202 with the upload."""
    _check_room(room)
    # Who is asking, without the CSRF check yet: for a POST, Django's check reads the form,
    # which would parse the whole upload before anything below could refuse it.
    identity = await authenticate(request, write=False)
    if request.method == "GET":
        return JsonResponse(await db(store.listing)(room, identity))
    await db(store.check_may_upload)(room, identity)
    length = _declared_length(request)
    if length is None:
        # Django reads no body without a length (a chunked upload would arrive empty).
        raise ProtocolError("invalid", "Send the upload with a Content-Length.")
    if length > settings.CHAT_DOCUMENT_MAX_BYTES + ENVELOPE_BYTES:
        store.check_size(length)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise ProtocolError(
            "unsupported_type", f"Send the file as multipart/form-data, in the field `{FIELD}`."
        )
    request.upload_handlers = [
        _OneLimitedFile(settings.CHAT_DOCUMENT_MAX_BYTES, request),
        TemporaryFileUploadHandler(request),
    ]
    try:
        # Now the CSRF check of a session (it parses the body, through the handlers above).
        await authenticate(request, write=True)
    except MultiPartParserError:
        raise ProtocolError("invalid", "The multipart body cannot be parsed.") from None
    uploaded = await asyncio.to_thread(_parse_upload, request)
    try:
        name = files.document_name(uploaded.name or "")
        size = int(uploaded.size or 0)
        store.check_size(size)
        await db(store.check_upload)(room, identity, name, size)
        data = await asyncio.to_thread(_read_all, uploaded)
    finally:
        uploaded.close()
    document = await asyncio.to_thread(files.read_upload, name, data)
    upload = await db(store.begin_upload)(room, identity, name, len(data))
    runtime = await detached(get_runtime())
    indexing.start(upload, document, runtime.log)
    return JsonResponse(
        {
            "upload": {
                "id": upload.id,
                "name": name,
                "size": upload.size,
                "status": "indexing",
                "progress": 0.0,
                "replaces": upload.replaces,
            }
        },
        status=202,
    )


@api_view("DELETE")
async def room_document(request: HttpRequest, room: str, name: str) -> HttpResponseBase:
    """`DELETE /api/rooms/<room>/documents/<name>`: its passages leave the index before the
    response; the room hears `document.deleted`."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    collection = await db(store.begin_delete)(room, identity, name)
    runtime = await detached(get_runtime())
    await detached(
        indexing.delete(
            room, name, {"id": identity.id, "name": identity.name}, collection, runtime.log
        )
    )
    return JsonResponse({"name": name, "deleted": True})
