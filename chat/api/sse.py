"""Server-Sent Events framing (the WHATWG `text/event-stream` format) for the API streams.

Each protocol frame becomes one event: `event:` is its `type`, `data:` is the very JSON the
WebSocket would send, and room events (those with a `seq`) carry `id: <seq>`, so a browser's
`EventSource` resumes by itself with the `Last-Event-ID` header.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Final

from django.http import StreamingHttpResponse

from chat.protocol import ROOM_EVENT_TYPES

CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
# How long a client waits before reconnecting after the stream ends or breaks (milliseconds).
RETRY_MS: Final = 3000
KEEP_ALIVE: Final = b": keep-alive\n\n"
DONE: Final = b"data: [DONE]\n\n"


def event(data: str, *, kind: str | None = None, id: int | None = None) -> bytes:
    """One event. `data` must hold no line break (compact JSON never does)."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if kind is not None:
        lines.append(f"event: {kind}")
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str) -> bytes:
    """A comment line: clients ignore it; it keeps proxies and idle timers from closing us."""
    return f": {text}\n\n".encode()


def retry(milliseconds: int = RETRY_MS) -> bytes:
    """The reconnection delay hint, sent first: `EventSource` waits this long to reconnect."""
    return f"retry: {milliseconds}\n\n".encode()


def frame_event(frame: str) -> bytes:
    """A protocol frame (JSON text) as an event; room events get their seq as the id."""
    parsed = json.loads(frame)
    kind = parsed.get("type")
    seq = parsed.get("seq")
    id = seq if kind in ROOM_EVENT_TYPES and isinstance(seq, int) else None
    return event(frame, kind=kind if isinstance(kind, str) else None, id=id)


def response(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """A streaming response over `stream`. Under ASGI, Django cancels the task iterating it
    when the client disconnects and closes the generator (`aclosing`), so its `finally` runs."""
    return StreamingHttpResponse(
        stream,
        content_type=CONTENT_TYPE,
        headers={
            "Cache-Control": "no-cache",
            # nginx and similar proxies otherwise buffer the stream.
            "X-Accel-Buffering": "no",
        },
    )
