"""👍 / 👎 on answers: one per person and answer, changeable, removable. Each change updates the
answer's `FeedbackCount` under a row lock and raises its `rev`, so the counts every change
reports are exact and ordered, whichever worker made it."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from chat.history import readable_room
from chat.identity import Identity
from chat.models import Feedback, FeedbackCount, Message
from chat.protocol import ProtocolError


@dataclass(frozen=True, slots=True)
class Counts:
    """An answer's counts after a change, and the change's `rev`."""

    answer_id: str
    up: int
    down: int
    rev: int
    changed: bool = True

    def to_wire(self) -> dict[str, int]:
        return {"up": self.up, "down": self.down, "rev": self.rev}


def set_feedback(room_name: str, identity: Identity, answer_id: str, value: str | None) -> Counts:
    """Store `identity`'s feedback on an answer of this room (`None` takes it back); anyone who
    may read the room may give it, signed in or a guest of a session (`forbidden` for a guest
    made for this connection or request alone). `not_found` for anything that is not an
    answer here. A
    change that changes nothing still reports the counts (with the same `rev`)."""
    room = readable_room(room_name, identity)
    if not identity.lasting:
        # One per person needs a person who stays the same: a client without a session would
        # be a new guest, with a new vote, at every connection or request.
        raise ProtocolError(
            "forbidden",
            "Sign in, or open the room's page to be a guest with a session, to give feedback.",
        )
    with transaction.atomic():
        answers = Message.objects.filter(room=room, id=answer_id, role=Message.Role.ASSISTANT)
        # A write first, that changes nothing: it locks the answer's row (PostgreSQL), so that
        # every change of its feedback takes its turn, and on SQLite takes the write lock at
        # once (a read first would fail, not wait, if another write came in between).
        if room is None or answers.update(role=F("role")) == 0:
            raise ProtocolError("not_found", "There is no such answer in this room.")
        answer = answers.get()
        count, _ = FeedbackCount.objects.get_or_create(answer=answer)
        before = Feedback.objects.filter(answer=answer, user_id=identity.id).first()
        old = before.value if before is not None else None
        if old == value:
            return Counts(answer.id, count.up, count.down, count.rev, changed=False)
        if value is None:
            if before is not None:
                before.delete()
        elif before is None:
            Feedback.objects.create(answer=answer, user_id=identity.id, value=value)
        else:
            before.value = value
            before.save(update_fields=["value", "updated"])
        # Moved by the change, not recounted: counts that came with an imported room stay.
        for side, delta in ((old, -1), (value, +1)):
            if side == Feedback.Value.UP:
                count.up = max(0, count.up + delta)
            elif side == Feedback.Value.DOWN:
                count.down = max(0, count.down + delta)
        count.rev += 1
        count.save(update_fields=["up", "down", "rev"])
        return Counts(answer.id, count.up, count.down, count.rev)


def mine(room_name: str, identity: Identity) -> dict[str, str]:
    """`identity`'s feedback in this room: answer id -> `up` / `down`."""
    room = readable_room(room_name, identity)
    if room is None:
        return {}
    rows = Feedback.objects.filter(answer__room=room, user_id=identity.id)
    return dict(rows.values_list("answer_id", "value"))
