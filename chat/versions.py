"""Storage of answer versions: a regenerated answer, a continued one, an edited question.

Each is checked and written in one trip to the database thread, like every other write
(`chat.storage`): the access rule, who may do it, what state the answer is in, and the new
answer's row. The row is made here, before the answer runs, so that the database's rule of one
answer being written per question (`one_running_version_per_question`) decides between two
requests racing on two workers: the second gets `busy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from chat import rooms
from chat.identity import Identity
from chat.models import Message, Room
from chat.protocol import ProtocolError
from chat.rooms.configuration import AnswerSettings

# An answer that ended with one of these can be continued: its text is a part of an answer.
CONTINUABLE = frozenset({"failed", "interrupted", "cancelled"})

Kind = Literal["regenerate", "continue"]


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A new version's row, stored `streaming`, and what its answer needs."""

    answer_id: str
    question_id: str
    question: str
    asker: str  # the question's author's name, as the conversation shows it to the LLM
    version: int
    answer_settings: AnswerSettings
    # A continuation: the answer it continues, that answer's text and sources.
    continues: str | None = None
    prefix: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)


def _answer_in(room: Room | None, answer_id: str) -> Message:
    found = (
        Message.objects.select_related("question")
        .filter(room=room, id=answer_id, role=Message.Role.ASSISTANT)
        .first()
        if room is not None
        else None
    )
    if found is None or found.question is None:
        raise ProtocolError("not_found", "There is no such answer in this room.")
    return found


def create_version(
    room_name: str, identity: Identity, answer_id: str, *, kind: Kind, new_answer_id: str
) -> NewVersion:
    """Check and store a new version of `answer_id`'s answer (see the module docstring).

    Refused with `not_found` (no such answer here, or a room `identity` may not enter),
    `forbidden` (neither its asker, a moderator nor staff), `busy` (a version of this question
    is being written) or `conflict` (continuing an answer that did not stop short, or one that
    a later version already replaced)."""
    room = Room.objects.filter(name=room_name).first()
    access = rooms.access_to(room, room_name, identity)
    access.check_enter()
    answer = _answer_in(room, answer_id)
    question = answer.question
    # _answer_in found both.
    assert room is not None
    assert question is not None
    if answer.user_id != identity.id and not access.may_moderate:
        raise ProtocolError(
            "forbidden",
            "Only the person who asked, or a moderator, can ask for another answer.",
        )
    if question.redacted:
        raise ProtocolError("conflict", "This question was removed by a moderator.")
    versions = Message.objects.filter(question=question, role=Message.Role.ASSISTANT)
    if versions.filter(status=Message.Status.STREAMING).exists():
        raise _busy()
    latest = versions.aggregate(latest=Max("version"))["latest"] or answer.version
    continues: str | None = None
    prefix = ""
    sources: list[dict[str, Any]] = []
    if kind == "continue":
        if answer.status not in CONTINUABLE:
            raise ProtocolError(
                "conflict",
                "Only an answer that failed, was interrupted or was stopped can be continued.",
            )
        if answer.redacted:
            raise ProtocolError("conflict", "This answer was removed by a moderator.")
        if answer.continued_by.exists():
            raise ProtocolError("conflict", "This answer has already been continued.")
        continues, prefix, sources = answer.id, answer.text, list(answer.sources or [])
    try:
        with transaction.atomic():
            Message.objects.create(
                id=new_answer_id,
                room=room,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                question=question,
                user_id=question.user_id,
                user_name=question.user_name,
                text=prefix,
                sources=sources,
                version=latest + 1,
                continues_id=continues,
                created=timezone.now(),
            )
    except IntegrityError:
        # Another worker's request for this question won the race a moment ago.
        raise _busy() from None
    return NewVersion(
        answer_id=new_answer_id,
        question_id=question.id,
        question=question.text,
        asker=question.user_name,
        version=latest + 1,
        answer_settings=AnswerSettings.of(room),
        continues=continues,
        prefix=prefix,
        sources=sources,
    )


def _busy() -> ProtocolError:
    return ProtocolError(
        "busy", "An answer to this question is being written; wait for it to end, or stop it."
    )


def forget_unstarted(answer_id: str) -> None:
    """Delete an answer's row whose `answer.start` never reached the room log (the log stayed
    away): nobody saw it, and its question is free for another version."""
    Message.objects.filter(id=answer_id, status=Message.Status.STREAMING).delete()


def check_edit(room_name: str, identity: Identity, question_id: str) -> None:
    """May `identity` send `question_id` again, edited? Only its asker, and not a question a
    moderator removed. (The edited question is then stored as any question is.)"""
    room = Room.objects.filter(name=room_name).first()
    rooms.access_to(room, room_name, identity).check_enter()
    question = (
        Message.objects.filter(room=room, id=question_id, role=Message.Role.USER).first()
        if room is not None
        else None
    )
    if question is None:
        raise ProtocolError("not_found", "There is no such question in this room.")
    if question.user_id != identity.id:
        raise ProtocolError("forbidden", "Only the person who asked can edit a question.")
    if question.redacted:
        raise ProtocolError("conflict", "This question was removed by a moderator.")
