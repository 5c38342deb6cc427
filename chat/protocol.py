"""The room protocol, version 1, in one typed module (see docs/protocol.md).

Client frames are parsed by `parse_command` into typed commands; everything the server sends is
built by the `*_event` / `*_frame` functions here, so the wire shapes live in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from chat.errors import ChatError

PROTOCOL_VERSION: Final = 1
ROOM_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CLIENT_ID_CHARS: Final = 64

# Close codes (RFC 6455 and the protocol's own 4xxx).
CLOSE_TOO_BIG: Final = 1009
CLOSE_POLICY: Final = 1008
CLOSE_INTERNAL: Final = 1011
CLOSE_RESTART: Final = 1012
CLOSE_BAD_ROOM: Final = 4004
CLOSE_TOO_SLOW: Final = 4008

# Types the client may send, and every type the server sends (docs are tested against these).
COMMAND_TYPES: Final = ("ask", "cancel", "ping")
ROOM_EVENT_TYPES: Final = (
    "question",
    "answer.start",
    "answer.sources",
    "answer.delta",
    "answer.end",
)
DIRECT_FRAME_TYPES: Final = ("welcome", "presence", "pong", "error")
ERROR_CODES: Final = (
    "bad_json",
    "bad_frame",
    "unknown_type",
    "invalid",
    "too_long",
    "rate_limited",
    "busy",
    "not_found",
    "forbidden",
)
FINAL_STATUSES: Final = ("complete", "cancelled", "failed", "interrupted")
AnswerStatus = Literal["complete", "cancelled", "failed", "interrupted"]


class ProtocolError(ChatError):
    """A client frame was refused; becomes an `error` frame and the connection stays open."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Ask:
    """`ask`: post a question to the room."""

    text: str
    client_id: str | None = None
    type: Literal["ask"] = "ask"


@dataclass(frozen=True, slots=True)
class Cancel:
    """`cancel`: stop an answer (its asker or staff only)."""

    answer_id: str
    type: Literal["cancel"] = "cancel"


@dataclass(frozen=True, slots=True)
class Ping:
    """`ping`: answered with `pong`."""

    type: Literal["ping"] = "ping"


Command = Ask | Cancel | Ping


def _parse_ask(frame: dict[str, Any], max_chars: int) -> Ask:
    text = frame.get("text")
    if not isinstance(text, str):
        raise ProtocolError("invalid", "`text` must be a string.")
    text = text.strip()
    if not text:
        raise ProtocolError("invalid", "`text` must not be empty.")
    if len(text) > max_chars:
        raise ProtocolError("too_long", f"`text` is longer than {max_chars} characters.")
    client_id = frame.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str) or not client_id:
            raise ProtocolError("invalid", "`client_id` must be a non-empty string.")
        if len(client_id) > MAX_CLIENT_ID_CHARS:
            raise ProtocolError(
                "too_long", f"`client_id` is longer than {MAX_CLIENT_ID_CHARS} characters."
            )
    return Ask(text=text, client_id=client_id)


def _parse_cancel(frame: dict[str, Any], max_chars: int) -> Cancel:
    answer_id = frame.get("answer_id")
    if not isinstance(answer_id, str) or not answer_id:
        raise ProtocolError("invalid", "`answer_id` must be a non-empty string.")
    return Cancel(answer_id=answer_id)


def _parse_ping(frame: dict[str, Any], max_chars: int) -> Ping:
    return Ping()


# Client input is dispatched through this explicit table, never getattr on client data.
_PARSERS: dict[str, Callable[[dict[str, Any], int], Command]] = {
    "ask": _parse_ask,
    "cancel": _parse_cancel,
    "ping": _parse_ping,
}


def parse_command(raw: str, *, max_chars: int) -> Command:
    """Parse one client text frame, or raise `ProtocolError` with the protocol's error code."""
    try:
        frame = json.loads(raw)
    except ValueError:
        raise ProtocolError("bad_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "A frame must be a JSON object.")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_frame", "A frame must have a string `type`.")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError("unknown_type", f"Unknown frame type {kind[:40]!r}.")
    return parser(frame, max_chars)


def dumps(frame: dict[str, Any]) -> str:
    """Compact JSON, UTF-8 kept as is (Korean text is not escaped into \\uXXXX)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


# --- Room events (every member; `seq` is added by the room log) -----------------------------


def question_event(
    *, id: str, user: dict[str, str], text: str, created: str, client_id: str | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "question",
        "id": id,
        "user": user,
        "text": text,
        "created": created,
    }
    if client_id:
        event["client_id"] = client_id
    return event


def answer_start_event(*, id: str, question_id: str, created: str) -> dict[str, Any]:
    # `created` is not in the protocol table; it is extra, so clients can show the time.
    return {"type": "answer.start", "id": id, "question_id": question_id, "created": created}


def answer_sources_event(*, answer_id: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "answer.sources", "answer_id": answer_id, "sources": sources}


def answer_delta_event(*, answer_id: str, text: str) -> dict[str, Any]:
    return {"type": "answer.delta", "answer_id": answer_id, "text": text}


def answer_end_event(
    *,
    answer_id: str,
    status: AnswerStatus,
    text: str,
    error: dict[str, str] | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "answer.end",
        "answer_id": answer_id,
        "status": status,
        "text": text,
    }
    if error is not None:
        event["error"] = error
    if usage is not None:
        event["usage"] = usage
    return event


# --- Frames to one connection (no seq) -------------------------------------------------------


def welcome_frame(
    *,
    room: str,
    user: dict[str, str],
    seq: int,
    resumed: bool,
    history: list[dict[str, Any]],
    members: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "room": room,
        "user": user,
        "seq": seq,
        "resumed": resumed,
        "history": history,
        "members": members,
    }


def presence_frame(members: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": "presence", "members": members}


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}


def error_frame(code: str, message: str, *, retry_after: float | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 3)
    return frame
