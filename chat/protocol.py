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

import orjson

from chat.errors import ChatError

PROTOCOL_VERSION: Final = 1
# The one room-name rule: the URL converter (chat.urlconverters), the views and the page's
# script (through its config) all use this pattern. Always matched as a whole string.
ROOM_NAME_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"
ROOM_NAME_RE: Final = re.compile(ROOM_NAME_PATTERN)
MAX_CLIENT_ID_CHARS: Final = 64
# A person's id on the wire: `u:<user pk>` (signed in) or `g:<hex>` (a guest).
USER_ID_RE: Final = re.compile(r"[ug]:[0-9A-Za-z]{1,40}")
# Ids the server makes are under 40 characters (the database column's size).
MAX_ID_CHARS: Final = 40

# Close codes (RFC 6455 and the protocol's own 4xxx).
CLOSE_TOO_BIG: Final = 1009
CLOSE_POLICY: Final = 1008
CLOSE_INTERNAL: Final = 1011
CLOSE_RESTART: Final = 1012
CLOSE_TRY_AGAIN: Final = 1013
CLOSE_REMOVED: Final = 4003
CLOSE_BAD_ROOM: Final = 4004
CLOSE_TOO_SLOW: Final = 4008
CLOSE_TOO_MANY: Final = 4029

# Types the client may send, and every type the server sends (docs are tested against these).
COMMAND_TYPES: Final = (
    "ask",
    "say",
    "typing",
    "cancel",
    "ping",
    "redact",
    "remove",
    "set_role",
    "feedback",
)
ROOM_EVENT_TYPES: Final = (
    "message",
    "question",
    "answer.start",
    "answer.sources",
    "answer.delta",
    "answer.end",
    "message.redacted",
    "room.updated",
    "answer.feedback",
    "document.added",
    "document.deleted",
)
DIRECT_FRAME_TYPES: Final = ("welcome", "presence", "typing", "pong", "error")
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
    "unavailable",
    "unsupported_type",
    "limit_reached",
)
FINAL_STATUSES: Final = ("complete", "cancelled", "failed", "interrupted")
AnswerStatus = Literal["complete", "cancelled", "failed", "interrupted"]


def is_room_name(name: str) -> bool:
    """True for a valid room name. A whole-string match: `re.match` with `$` would accept a
    trailing newline ("lobby\\n"), which once created a room the home page could not link to."""
    return ROOM_NAME_RE.fullmatch(name) is not None


class ProtocolError(ChatError):
    """A client's frame or request was refused: the one error type of every transport. On a
    socket it becomes an `error` frame and the connection stays open; over HTTP, a JSON error
    body with the status `chat.api.errors.STATUS_BY_CODE` gives its code."""

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
class Say:
    """`say`: a plain message to the people in the room; it asks the assistant nothing."""

    text: str
    client_id: str | None = None
    type: Literal["say"] = "say"


@dataclass(frozen=True, slots=True)
class Typing:
    """`typing`: the sender is writing something; the room's other members are told."""

    type: Literal["typing"] = "typing"


@dataclass(frozen=True, slots=True)
class Cancel:
    """`cancel`: stop an answer (its asker or staff only)."""

    answer_id: str
    type: Literal["cancel"] = "cancel"


@dataclass(frozen=True, slots=True)
class Regenerate:
    """`regenerate`: a new version of an answer (a new answer to the same question), streamed
    to everyone; its asker, a moderator or staff. Earlier versions are kept."""

    answer_id: str
    type: Literal["regenerate"] = "regenerate"


@dataclass(frozen=True, slots=True)
class Continue:
    """`continue`: carry on an answer that ended `failed`, `interrupted` or `cancelled`: a new
    version that starts with the text already written and extends it."""

    answer_id: str
    type: Literal["continue"] = "continue"


@dataclass(frozen=True, slots=True)
class Edit:
    """`edit`: the asker sends their question again, edited: a new question linked to the
    original (`edits`), with its own answer."""

    question_id: str
    text: str
    client_id: str | None = None
    type: Literal["edit"] = "edit"


@dataclass(frozen=True, slots=True)
class Ping:
    """`ping`: answered with `pong`."""

    type: Literal["ping"] = "ping"


@dataclass(frozen=True, slots=True)
class Redact:
    """`redact`: remove a message, question or answer's text for everyone (moderators).
    Names it by `id`, or by the `seq` of the event that posted it; exactly one of them."""

    id: str | None = None
    seq: int | None = None
    type: Literal["redact"] = "redact"


@dataclass(frozen=True, slots=True)
class Remove:
    """`remove`: a moderator removes someone from the room (their sockets close, 4003)."""

    user_id: str
    type: Literal["remove"] = "remove"


@dataclass(frozen=True, slots=True)
class SetRole:
    """`set_role`: make a signed-in person a `moderator` or a `member` of the room."""

    user_id: str
    role: str
    type: Literal["set_role"] = "set_role"


@dataclass(frozen=True, slots=True)
class Feedback:
    """`feedback`: your 👍 (`up`) or 👎 (`down`) on an answer, or `null` to take yours back."""

    answer_id: str
    value: str | None
    type: Literal["feedback"] = "feedback"


Command = (
    Ask
    | Say
    | Typing
    | Cancel
    | Ping
    | Redact
    | Remove
    | SetRole
    | Regenerate
    | Continue
    | Edit
    | Feedback
)
FEEDBACK_VALUES: Final = ("up", "down")


@dataclass(frozen=True, slots=True)
class TextLimits:
    """The longest `text`, in characters after trimming: of a question (`ask`) and of a
    person's message (`say`)."""

    question: int
    message: int


def _check_text(value: str, name: str) -> None:
    """Refuse what no database column or UTF-8 frame can hold: NUL (PostgreSQL refuses it in
    text) and lone surrogates (a JSON `"\\ud800"` parses, then fails when encoded)."""
    if "\x00" in value:
        raise ProtocolError("invalid", f"`{name}` must not contain NUL characters.")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(
                "invalid", f"`{name}` is not valid Unicode (it has a lone surrogate)."
            ) from None


def _parse_text(frame: dict[str, Any], max_chars: int) -> tuple[str, str | None]:
    """The `text` and optional `client_id` of an `ask` or a `say`."""
    text = frame.get("text")
    if not isinstance(text, str):
        raise ProtocolError("invalid", "`text` must be a string.")
    text = text.strip()
    if not text:
        raise ProtocolError("invalid", "`text` must not be empty.")
    if len(text) > max_chars:
        raise ProtocolError("too_long", f"`text` is longer than {max_chars} characters.")
    _check_text(text, "text")
    client_id = frame.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str) or not client_id:
            raise ProtocolError("invalid", "`client_id` must be a non-empty string.")
        if len(client_id) > MAX_CLIENT_ID_CHARS:
            raise ProtocolError(
                "too_long", f"`client_id` is longer than {MAX_CLIENT_ID_CHARS} characters."
            )
        _check_text(client_id, "client_id")
    return text, client_id


def _parse_ask(frame: dict[str, Any], limits: TextLimits) -> Ask:
    text, client_id = _parse_text(frame, limits.question)
    return Ask(text=text, client_id=client_id)


def _parse_say(frame: dict[str, Any], limits: TextLimits) -> Say:
    text, client_id = _parse_text(frame, limits.message)
    return Say(text=text, client_id=client_id)


def _parse_typing(frame: dict[str, Any], limits: TextLimits) -> Typing:
    return Typing()


def _message_id(frame: dict[str, Any], name: str) -> str:
    """A message's id given by the client (`answer_id`, `question_id`, ...)."""
    value = frame.get(name)
    if not isinstance(value, str) or not value:
        raise ProtocolError("invalid", f"`{name}` must be a non-empty string.")
    if len(value) > MAX_ID_CHARS:
        raise ProtocolError("invalid", f"`{name}` is longer than {MAX_ID_CHARS} characters.")
    _check_text(value, name)
    return value


def _parse_cancel(frame: dict[str, Any], limits: TextLimits) -> Cancel:
    return Cancel(answer_id=_message_id(frame, "answer_id"))


def _parse_regenerate(frame: dict[str, Any], limits: TextLimits) -> Regenerate:
    return Regenerate(answer_id=_message_id(frame, "answer_id"))


def _parse_continue(frame: dict[str, Any], limits: TextLimits) -> Continue:
    return Continue(answer_id=_message_id(frame, "answer_id"))


def _parse_edit(frame: dict[str, Any], limits: TextLimits) -> Edit:
    question_id = _message_id(frame, "question_id")
    text, client_id = _parse_text(frame, limits.question)
    return Edit(question_id=question_id, text=text, client_id=client_id)


def _parse_feedback(frame: dict[str, Any], limits: TextLimits) -> Feedback:
    # `value` must be present: a missing one is a mistake, `null` is a choice (take it back).
    if "value" not in frame or (
        frame["value"] is not None and frame["value"] not in FEEDBACK_VALUES
    ):
        raise ProtocolError("invalid", "`value` is `up`, `down` or null.")
    return Feedback(answer_id=_message_id(frame, "answer_id"), value=frame["value"])


def _parse_ping(frame: dict[str, Any], limits: TextLimits) -> Ping:
    return Ping()


def _parse_redact(frame: dict[str, Any], limits: TextLimits) -> Redact:
    message_id, seq = frame.get("id"), frame.get("seq")
    if (message_id is None) == (seq is None):
        raise ProtocolError("invalid", "Give exactly one of `id` and `seq`.")
    if seq is not None:
        # bool is an int in Python; `true` is not a seq.
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ProtocolError("invalid", "`seq` must be a positive integer.")
        return Redact(seq=seq)
    if not isinstance(message_id, str) or not message_id:
        raise ProtocolError("invalid", "`id` must be a non-empty string.")
    if len(message_id) > MAX_ID_CHARS:
        raise ProtocolError("invalid", f"`id` is longer than {MAX_ID_CHARS} characters.")
    _check_text(message_id, "id")
    return Redact(id=message_id)


def _user_id(frame: dict[str, Any]) -> str:
    user_id = frame.get("user_id")
    if not isinstance(user_id, str) or USER_ID_RE.fullmatch(user_id) is None:
        raise ProtocolError("invalid", "`user_id` must be a member's id, such as `u:12`.")
    return user_id


def _parse_remove(frame: dict[str, Any], limits: TextLimits) -> Remove:
    return Remove(user_id=_user_id(frame))


def _parse_set_role(frame: dict[str, Any], limits: TextLimits) -> SetRole:
    role = frame.get("role")
    if role not in ("moderator", "member"):
        raise ProtocolError("invalid", "`role` is `moderator` or `member`.")
    return SetRole(user_id=_user_id(frame), role=role)


# Client input is dispatched through this explicit table, never getattr on client data.
_PARSERS: dict[str, Callable[[dict[str, Any], TextLimits], Command]] = {
    "ask": _parse_ask,
    "say": _parse_say,
    "typing": _parse_typing,
    "cancel": _parse_cancel,
    "ping": _parse_ping,
    "redact": _parse_redact,
    "remove": _parse_remove,
    "set_role": _parse_set_role,
    "regenerate": _parse_regenerate,
    "continue": _parse_continue,
    "edit": _parse_edit,
    "feedback": _parse_feedback,
}


# No command nests anywhere near this deep. A limit of our own, because Python's own differs by
# version (3.11 gives up at about 1,000 levels, 3.13 reads 5,000), and a frame must get the
# same answer from every worker.
MAX_JSON_DEPTH: Final = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def _nested_too_deep(raw: str) -> bool:
    """More than MAX_JSON_DEPTH levels of arrays and objects (brackets inside strings aside)."""
    if raw.count("[") + raw.count("{") <= MAX_JSON_DEPTH:
        return False  # the common case: no scan at all
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub("", raw)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def load_json_object(raw: str | bytes, *, what: str = "frame") -> dict[str, Any]:
    """Decode a client's JSON object (a WebSocket frame or an HTTP body), or raise the
    protocol's `bad_json` / `bad_frame`. Bytes must be UTF-8; JSON nested deeper than
    MAX_JSON_DEPTH is `bad_json` too."""
    not_json = ProtocolError("bad_json", f"The {what} is not valid JSON.")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise not_json from None
    if _nested_too_deep(text):
        raise ProtocolError("bad_json", f"The {what} is nested too deep to read.")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise not_json from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_frame", f"The {what} must be a JSON object.")
    return value


def parse_frame(
    frame: dict[str, Any], *, max_chars: int, max_message_chars: int | None = None
) -> Command:
    """Parse one decoded client frame (WebSocket, HTTP body or CLI alike) into a command, or
    raise `ProtocolError` with the protocol's error code. `max_chars`: the longest question;
    `max_message_chars`: the longest `say` (default: the same)."""
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_frame", "A frame must have a string `type`.")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError("unknown_type", f"Unknown frame type {kind[:40]!r}.")
    limits = TextLimits(
        question=max_chars,
        message=max_chars if max_message_chars is None else max_message_chars,
    )
    return parser(frame, limits)


def parse_command(raw: str, *, max_chars: int, max_message_chars: int | None = None) -> Command:
    """Parse one client text frame, or raise `ProtocolError` with the protocol's error code."""
    return parse_frame(
        load_json_object(raw), max_chars=max_chars, max_message_chars=max_message_chars
    )


def dumps(frame: dict[str, Any]) -> str:
    """Compact JSON, UTF-8 kept as is (Korean text is not escaped into \\uXXXX). Written by
    orjson, several times faster than `json.dumps` on the frames a worker writes most (a
    delta per token, a welcome and presence lists per join: docs/benchmarks.md); what orjson
    refuses (a lone surrogate, an integer over 64 bits) `json` writes, as it always did."""
    try:
        return orjson.dumps(frame).decode()
    except orjson.JSONEncodeError:
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


# --- Room events (every member; `seq` is added by the room log) -----------------------------


def _frame(kind: str, /, **fields: Any) -> dict[str, Any]:
    """A frame of type `kind`; optional fields that are None are left out, not sent as null."""
    return {"type": kind, **{name: value for name, value in fields.items() if value is not None}}


def message_event(
    *, id: str, user: dict[str, str], text: str, created: str, client_id: str | None
) -> dict[str, Any]:
    """A person's plain message (`say`): shown to the room, answered by nobody."""
    return _frame(
        "message", id=id, user=user, text=text, created=created, client_id=client_id or None
    )


def question_event(
    *,
    id: str,
    user: dict[str, str],
    text: str,
    created: str,
    client_id: str | None,
    edits: str | None = None,
) -> dict[str, Any]:
    """A question; `edits`: the question it is an edited version of."""
    return _frame(
        "question",
        id=id,
        user=user,
        text=text,
        created=created,
        client_id=client_id or None,
        edits=edits,
    )


def answer_start_event(
    *, id: str, question_id: str, created: str, version: int = 1, continues: str | None = None
) -> dict[str, Any]:
    """An answer begins: `version` counts the answers to its question (2 and up: regenerated
    or continued); `continues`: the answer whose text this one starts with and extends (its
    first delta is that text)."""
    # `created` is not in the protocol table; it is extra, so clients can show the time.
    return _frame(
        "answer.start",
        id=id,
        question_id=question_id,
        created=created,
        version=version,
        continues=continues,
    )


def answer_sources_event(
    *,
    answer_id: str,
    sources: list[dict[str, Any]],
    query: str | None = None,
    question_id: str | None = None,
) -> dict[str, Any]:
    """`query`: what was searched when it was not the question as asked (a rewritten
    follow-up); the field is left out otherwise. `question_id` goes with a query: it holds
    the question's words, so redacting the question takes it out (chat.realtime.redaction)."""
    event: dict[str, Any] = {"type": "answer.sources", "answer_id": answer_id, "sources": sources}
    if query is not None:
        event["query"] = query
        if question_id is not None:
            event["question_id"] = question_id
    return event


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
    return _frame(
        "answer.end", answer_id=answer_id, status=status, text=text, error=error, usage=usage
    )


def message_redacted_event(*, id: str) -> dict[str, Any]:
    return {"type": "message.redacted", "id": id}


def room_updated_event(*, room: dict[str, Any]) -> dict[str, Any]:
    """The room's owner (or staff) changed its settings: `room` is what members may know of
    them (`chat.rooms.configuration.public_info`; never the system prompt)."""
    return {"type": "room.updated", "room": room}


def answer_feedback_event(*, answer_id: str, up: int, down: int, rev: int) -> dict[str, Any]:
    """Someone gave, changed or took back their 👍/👎 on an answer: its counts now. `rev` grows
    with each change; apply counts only over ones with a lower `rev` (two changes made on two
    workers may be appended in either order)."""
    return {"type": "answer.feedback", "answer_id": answer_id, "up": up, "down": down, "rev": rev}


def document_added_event(*, document: dict[str, Any], replaced: bool) -> dict[str, Any]:
    """A document uploaded to the room's own collection is searchable (`replaced`: it took
    the place of one with the same name). `document`: `chat.documents.store.document_info`."""
    return {"type": "document.added", "document": document, "replaced": replaced}


def document_deleted_event(*, name: str, user: dict[str, str]) -> dict[str, Any]:
    """A moderator deleted the room's document `name`: its passages are no longer searched."""
    return {"type": "document.deleted", "name": name, "user": user}


# --- Frames to one connection (no seq) -------------------------------------------------------


def welcome_frame(
    *,
    room: str,
    user: dict[str, str],
    seq: int,
    resumed: bool,
    history: list[dict[str, Any]],
    members: list[dict[str, str]],
    access: dict[str, Any] | None = None,
    room_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return _frame(
        "welcome",
        protocol=PROTOCOL_VERSION,
        room=room,
        user=user,
        seq=seq,
        resumed=resumed,
        history=history,
        members=members,
        access=access,
        room_info=room_info,  # additive: the room's public settings
    )


def access_info(*, role: str | None, moderate: bool, configure: bool) -> dict[str, Any]:
    """The `welcome`'s `access`: what you may do in this room (the page shows its controls)."""
    return {"role": role, "moderate": moderate, "configure": configure}


def presence_frame(members: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": "presence", "members": members}


def typing_frame(user: dict[str, str]) -> dict[str, Any]:
    """Someone in the room is writing (ephemeral: no seq, not stored, not replayed)."""
    return {"type": "typing", "user": user}


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}


def error_frame(code: str, message: str, *, retry_after: float | None = None) -> dict[str, Any]:
    rounded = round(retry_after, 3) if retry_after is not None else None
    return _frame("error", code=code, message=message, retry_after=rounded)
