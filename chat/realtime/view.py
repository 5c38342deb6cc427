"""The materialised view of a room's latest messages, as the room log keeps it.

`apply_to_view` folds one room event into the view; `render_history` turns the view into the
`history` list of a `welcome`. The Redis backend does the same fold in Lua; both are tested
against the same expectations.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from chat.realtime.redaction import REDACTED_PATCH, REDACTED_TYPE

View = OrderedDict[str, dict[str, Any]]


def apply_to_view(
    view: View,
    live: dict[str, list[str]],
    event: dict[str, Any],
    view_size: int,
    seq: int | None = None,
) -> None:
    """Fold one room event, appended at `seq`, into the view (and the texts of live answers).
    A message keeps the seq that posted it (history pages go on from the oldest shown)."""
    kind = event["type"]
    if kind == "answer.delta":
        parts = live.get(event["answer_id"])
        if parts is not None:
            parts.append(event["text"])
        return
    if kind in ("question", "message"):
        # A question is role `user` (as v1 always had it); a person's plain message (`say`)
        # is role `message`, which a v1 client that knows only `user` and `assistant` skips.
        message = {
            **({"seq": seq} if seq is not None else {}),
            "id": event["id"],
            "role": "user" if kind == "question" else "message",
            "text": event["text"],
            "status": "complete",
            "created": event["created"],
            "user": event["user"],
        }
        for key in ("client_id", "edits"):
            if key in event:
                message[key] = event[key]
        _add(view, message, view_size)
    elif kind == "answer.start":
        live[event["id"]] = []
        started: dict[str, Any] = {
            **({"seq": seq} if seq is not None else {}),
            "id": event["id"],
            "role": "assistant",
            "text": "",
            "status": "streaming",
            "created": event["created"],
            "question_id": event["question_id"],
            "version": event.get("version", 1),
            "sources": [],
        }
        if "continues" in event:
            started["continues"] = event["continues"]
        _add(view, started, view_size)
    elif kind == "answer.sources":
        answer = view.get(event["answer_id"])
        if answer is not None:
            answer["sources"] = event["sources"]
    elif kind == "answer.end":
        live.pop(event["answer_id"], None)
        answer = view.get(event["answer_id"])
        if answer is not None:
            answer["status"] = event["status"]
            answer["text"] = event["text"]
            for key in ("error", "usage", "redacted"):
                if key in event:
                    answer[key] = event[key]
    elif kind == "answer.feedback":
        answer = view.get(event["answer_id"])
        # Counts with a lower rev than the view's are an earlier change appended late.
        if answer is not None and event["rev"] > answer.get("feedback", {}).get("rev", 0):
            answer["feedback"] = feedback_counts(event)
    elif kind == REDACTED_TYPE:
        redacted = view.get(event["id"])
        if redacted is not None:
            redacted.update(REDACTED_PATCH)
        if event["id"] in live:
            # Still being written: what it wrote is gone; what it writes next arrives redacted.
            live[event["id"]] = []


def feedback_counts(event: dict[str, Any]) -> dict[str, int]:
    """A history item's `feedback`, from an `answer.feedback` event."""
    return {"up": event["up"], "down": event["down"], "rev": event["rev"]}


def _add(view: View, message: dict[str, Any], view_size: int) -> None:
    view[message["id"]] = message
    while len(view) > view_size:
        view.popitem(last=False)


def render_history(view: View, live: dict[str, list[str]], limit: int) -> list[dict[str, Any]]:
    """The latest `limit` messages, oldest first, answers being written with their text so far."""
    items = list(view.values())[-limit:] if limit > 0 else []
    history = []
    for message in items:
        message = dict(message)
        parts = live.get(message["id"])
        if parts is not None:
            message["text"] = "".join(parts)
        history.append(message)
    return history
