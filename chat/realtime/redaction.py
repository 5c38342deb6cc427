"""What a redacted message leaves in the room log: its events with the text taken out.

A moderator's `redact` appends a `message.redacted` event naming the message. From then on
every reader of the log (a `welcome`, an `after=` resume, an SSE replay, every worker's ring of
recent events) sees the message's events in their redacted form: same seq, no text. Events
appended later for it (the deltas and end of an answer still being written) are stored in
that form already. Both room-log backends and the hub use these functions, so they agree.

A message's events name it by `id` (`question`, `message`, `answer.start`) or `answer_id`
(`answer.sources`, `answer.delta`, `answer.end`). An `answer.sources` with a `query` (the
question rewritten for the search, which keeps its words) also names its question
(`question_id`): redacting either takes the query out; the sources and the answer stay. A
JSON string never holds a bare `"`, so the substring `"<id>"` can only be a key's or value's
whole string: a quick, exact first test before any frame is decoded.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Final

from chat.protocol import dumps

REDACTED_TYPE: Final = "message.redacted"
# What redaction does to a message in the view, and to its `history` item.
REDACTED_PATCH: Final[dict[str, Any]] = {"text": "", "redacted": True}


def subject(event: dict[str, Any]) -> str | None:
    """The id of the message an event is about."""
    kind = event.get("type")
    if kind in ("question", "message", "answer.start", REDACTED_TYPE):
        return event.get("id")
    return event.get("answer_id")


def touched_by(event: dict[str, Any], ids: Collection[str]) -> bool:
    """Whether redacting the messages `ids` changes `event`: it is about one of them, or it
    is an `answer.sources` whose query holds the words of a question among them."""
    if subject(event) in ids:
        return True
    return event.get("type") == "answer.sources" and event.get("question_id") in ids


def redacted_form(event: dict[str, Any]) -> dict[str, Any]:
    """`event` as it may still be read once its message is redacted (its seq kept)."""
    kind = event["type"]
    if kind in ("question", "message", "answer.end"):
        return {**event, **REDACTED_PATCH}
    if kind == "answer.delta":
        # Its text is all a delta is: it becomes a repeat of the redaction, under its own seq
        # (so no seq goes missing; applying a redaction twice changes nothing).
        form: dict[str, Any] = {"seq": event["seq"]} if "seq" in event else {}
        return {**form, "type": REDACTED_TYPE, "id": event["answer_id"]}
    if kind == "answer.sources" and "query" in event:
        # The question rewritten for the search keeps its words (names, codes, numbers).
        return {key: value for key, value in event.items() if key != "query"}
    return event  # answer.start, answer.sources without a query: no one's words


def mentions(frame: str, ids: Collection[str]) -> bool:
    return any(f'"{message_id}"' in frame for message_id in ids)


def scrub(frame: str, ids: Collection[str]) -> str:
    """The frame as it may be read when the messages `ids` are redacted."""
    if not ids or not mentions(frame, ids):
        return frame
    event = json.loads(frame)
    if not touched_by(event, ids):
        return frame
    redacted = redacted_form(event)
    return frame if redacted is event else dumps(redacted)


def redaction_of(frame: str) -> str | None:
    """The message id a `message.redacted` frame redacts; None for any other frame. Cheap on
    the hot path: the type comes right after the seq in every frame the log makes."""
    if f'"type":"{REDACTED_TYPE}"' not in frame[:48]:
        return None
    value = json.loads(frame).get("id")
    return value if isinstance(value, str) else None
