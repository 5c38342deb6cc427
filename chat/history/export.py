"""A room's history as a file: JSON that reads back losslessly (`load_room`, `manage.py
importroom`), and Markdown for people to read.

The JSON holds one entry per stored message, oldest first (by `created`): people's messages,
questions, answers with their status, sources, error, usage and feedback counts. An answer
names its question (`question_id`); the versions of an answer are more entries naming the same
question, each with its `version` (and `continues_id` for a continuation); an edited question
names the one it edits (`edits_id`). What a moderator removed stays removed: its entry
has `redacted: true` and no text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime

from chat.history import readable_room
from chat.identity import Identity
from chat.models import FeedbackCount, Message, Room
from chat.protocol import ProtocolError, is_room_name

FORMAT: Final = "roomchat.room-export"
VERSION: Final = 1
# Stored fields of a message, in the order an entry lists them.
_FIELDS: Final = (
    "id",
    "seq",
    "end_seq",
    "role",
    "status",
    "user_id",
    "user_name",
    "client_id",
    "question_id",
    "text",
    "sources",
    "usage",
    "error",
    "created",
    "finished",
    "redacted",
    # Versions of an answer (regenerated, continued) and edited questions.
    "version",
    "continues_id",
    "edits_id",
)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _entry(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(message, name)
        entry[name] = _iso(value) if isinstance(value, datetime) else value
    try:
        count = message.feedback_count
        entry["feedback"] = {"up": count.up, "down": count.down}
    except FeedbackCount.DoesNotExist:
        entry["feedback"] = {"up": 0, "down": 0}
    return entry


def export_room(room_name: str, identity: Identity) -> dict[str, Any]:
    """The room as JSON-ready data; `not_found` where `identity` may not read it."""
    room = readable_room(room_name, identity)
    messages: list[Message] = []
    if room is not None:
        messages = list(
            Message.objects.filter(room=room)
            .select_related("feedback_count")
            .order_by("created", "id")
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "room": {
            "name": room_name,
            "title": room.title if room is not None else "",
            "description": room.description if room is not None else "",
        },
        "messages": [_entry(message) for message in messages],
    }


# The Markdown export's own words, in the page's two languages (the page's strings: i18n.js).
LABELS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "assistant": "Assistant",
        "asked": "asked the assistant",
        "removed": "Removed by a moderator.",
        "error": "Error",
        "sources": "Sources",
        "cancelled": "Stopped",
        "failed": "Failed",
        "interrupted": "Interrupted",
        "streaming": "Being written",
    },
    "ko": {
        "assistant": "어시스턴트",
        "asked": "비서에게 질문",
        "removed": "운영자가 삭제한 메시지입니다.",
        "error": "오류",
        "sources": "출처",
        "cancelled": "중지됨",
        "failed": "실패",
        "interrupted": "중단됨",
        "streaming": "작성 중",
    },
}


def to_markdown(data: dict[str, Any], *, language: str = "en") -> str:
    """The export as Markdown, in `language` (`en`, `ko`): who said what, when; answers with
    their status, sources and feedback. People's words are written as they are (the file is
    read, not rendered here)."""
    words = LABELS.get(language, LABELS["en"])
    room = data["room"]
    lines = [f"# {room['title'] or room['name']}", ""]
    if room.get("description"):
        lines += [room["description"], ""]
    for entry in data["messages"]:
        when = entry["created"] or ""
        if entry["role"] == Message.Role.ASSISTANT:
            head = f"### {words['assistant']} · {when}"
            if entry["status"] != Message.Status.COMPLETE:
                head += f" · {words.get(entry['status'], entry['status'])}"
        else:
            asked = f" ({words['asked']})" if entry["role"] == Message.Role.USER else ""
            head = f"### {entry['user_name'] or entry['user_id']}{asked} · {when}"
        lines += [head, ""]
        if entry["redacted"]:
            lines += [f"*{words['removed']}*", ""]
            continue
        if entry["text"]:
            lines += [entry["text"], ""]
        error = entry.get("error")
        if error:
            lines += [
                f"> {words['error']} `{error.get('code', '')}`: {error.get('message', '')}",
                "",
            ]
        if entry["role"] == Message.Role.ASSISTANT:
            sources = entry.get("sources") or []
            if sources:
                lines += [f"{words['sources']}:", ""]
            for number, source in enumerate(sources, start=1):
                name = source.get("source") or source.get("title") or source.get("id", "")
                snippet = " ".join(str(source.get("snippet", "")).split())
                lines.append(f"{number}. **{source.get('title') or name}** ({name}): {snippet}")
            if sources:
                lines.append("")
            feedback = entry.get("feedback") or {}
            if feedback.get("up") or feedback.get("down"):
                lines += [f"👍 {feedback.get('up', 0)} · 👎 {feedback.get('down', 0)}", ""]
    return "\n".join(lines).rstrip() + "\n"


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        raise ProtocolError("invalid", f"Not a date and time: {str(value)[:40]!r}.")
    return moment


def load_room(data: dict[str, Any], *, room_name: str | None = None) -> Room:
    """Store an export (as `export_room` made it) as a new room, `room_name` or the one it
    names: every message with its fields and feedback counts. `invalid` for data that is not
    such an export, `conflict` when the room or one of the messages is already stored.
    The room starts as a public room with no owner (give it one in the admin)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ProtocolError("invalid", f"Not a {FORMAT} version {VERSION} file.")
    info = data.get("room")
    if not isinstance(info, dict):
        raise ProtocolError("invalid", "`room` must be an object.")
    name = room_name or str(info.get("name", ""))
    if not is_room_name(name):
        raise ProtocolError("invalid", "A room name is 1 to 64 characters of A-Z a-z 0-9 _ -.")
    entries = data.get("messages")
    if not isinstance(entries, list):
        raise ProtocolError("invalid", "`messages` must be a list.")
    with transaction.atomic():
        if Room.objects.filter(name=name).exists():
            raise ProtocolError("conflict", f"There is already a room called {name}.")
        ids = [entry.get("id") for entry in entries if isinstance(entry, dict)]
        if Message.objects.filter(id__in=ids).exists():
            raise ProtocolError("conflict", "Some of these messages are already stored.")
        seqs = [e.get("end_seq") or e.get("seq") or 0 for e in entries if isinstance(e, dict)]
        room = Room.objects.create(
            name=name,
            title=str(info.get("title", "")),
            description=str(info.get("description", "")),
            last_seq=max(seqs, default=0),
        )
        for entry in entries:
            if not isinstance(entry, dict):
                raise ProtocolError("invalid", "Each message must be an object.")
            fields = {key: entry.get(key) for key in _FIELDS}
            for key in ("created", "finished"):
                fields[key] = _moment(fields[key])
            for key in ("user_id", "user_name", "client_id", "text"):
                fields[key] = fields[key] or ""
            fields["sources"] = fields["sources"] or []
            fields["redacted"] = bool(fields["redacted"])
            fields["version"] = fields["version"] or 1  # exports from before versions
            message = Message(room=room, **fields)
            try:
                message.full_clean(exclude=["room", "question", "continues", "edits", "sources"])
            except ValidationError as err:
                raise ProtocolError("invalid", f"Message {str(fields['id'])[:40]}: {err}") from None
            message.save(force_insert=True)
            feedback = entry.get("feedback") or {}
            if feedback.get("up") or feedback.get("down"):
                FeedbackCount.objects.create(
                    answer=message,
                    up=int(feedback.get("up", 0)),
                    down=int(feedback.get("down", 0)),
                    rev=1,
                )
    return room
