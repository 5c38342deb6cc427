"""Storage: every database read and write of the chat, as plain synchronous functions.

Async callers wrap them with `channels.db.database_sync_to_async`, which runs them in Django's
thread and closes stale connections. Nothing else in `chat` touches the ORM (the admin and the
migrations aside).
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

from django.db import Error, IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from chat import rooms, versions
from chat.identity import Identity
from chat.models import ApiToken, FeedbackCount, Message, Room
from chat.protocol import ProtocolError
from chat.rooms.configuration import AnswerSettings

R = TypeVar("R")


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def touch_room(name: str, seq: int | None = None) -> None:
    """Mark activity, and remember the highest seq the log has reached."""
    updates: dict[str, Any] = {"last_activity": timezone.now()}
    if seq is not None:
        updates["last_seq"] = Greatest(F("last_seq"), seq)
    Room.objects.filter(name=name).update(**updates)


@dataclass(frozen=True, slots=True)
class StoredQuestion:
    """A question (or a person's message) as stored; `created` is False for a repeat of a
    `client_id` (then this is the message first sent with it). `answer_settings`: its room's,
    as they are now."""

    id: str
    text: str
    created_at: datetime
    created: bool
    answer_settings: AnswerSettings
    room_id: int
    # The first thing said in the room (its row was made for it): nothing came before it.
    first_in_room: bool

    @classmethod
    def of(cls, message: Message, room: Room, *, created: bool, first_in_room: bool) -> Self:
        return cls(
            id=message.id,
            text=message.text,
            created_at=message.created,
            created=created,
            answer_settings=AnswerSettings.of(room),
            room_id=room.pk,
            first_in_room=first_in_room,
        )


def create_question(
    room_name: str,
    *,
    message_id: str,
    identity: Identity,
    text: str,
    client_id: str | None,
    edits: str | None = None,
) -> StoredQuestion:
    """Store a question, or find the one this client_id already asked here. Refused
    (`not_found`, as for no room) where `identity` may not enter: the check and the write are
    one trip to the database thread, on every transport's path (chat.answers.admission).
    `edits`: the question this one is an edited version of (its asker's own: checked here)."""
    if edits is not None:
        versions.check_edit(room_name, identity, edits)
    return _create_said(
        room_name,
        role=Message.Role.USER,
        message_id=message_id,
        identity=identity,
        text=text,
        client_id=client_id,
        edits=edits,
    )


def create_question_in_context(
    room_name: str,
    *,
    context_limit: int,
    message_id: str,
    identity: Identity,
    text: str,
    client_id: str | None,
    edits: str | None = None,
    answer_id: str | None = None,
) -> tuple[StoredQuestion, list[Message]]:
    """`create_question`, and for a new question the conversation before it
    (`context_messages`), in the same trip to the database thread: the answer needs both
    before it can search (a follow-up is rewritten from the conversation). `answer_id`: its
    answer's row is made too (`_answer_row`), for a new question."""
    stored = create_question(
        room_name,
        message_id=message_id,
        identity=identity,
        text=text,
        client_id=client_id,
        edits=edits,
    )
    if stored.created and answer_id is not None:
        _answer_row(answer_id, stored, identity).save(force_insert=True)
    if not stored.created or stored.first_in_room:
        return stored, []
    conversation = _conversation_before(
        stored.room_id, before=stored.created_at, limit=context_limit
    )
    return stored, conversation


def _each_in_a_savepoint(items: list[Any], write: Callable[[Any], R]) -> list[R | Exception]:
    """`write(item)` for each item in one transaction, each in a savepoint of its own: one
    that fails is rolled back alone and its error returned in its place. A failure of the
    transaction itself (the database away) is raised, for every item."""
    done: list[R | Exception] = []
    with transaction.atomic():
        for item in items:
            try:
                with transaction.atomic():
                    done.append(write(item))
            except Exception as err:
                done.append(err)
    return done


@dataclass(frozen=True, slots=True)
class QuestionToStore:
    """One ask's write, as `create_question_in_context` takes it."""

    room_name: str
    message_id: str
    identity: Identity
    text: str
    client_id: str | None
    edits: str | None
    context_limit: int
    # Its answer's id: the answer's row is made with the question's (None: no row).
    answer_id: str | None = None


AskWritten = tuple[StoredQuestion, list[Message]] | Exception


def create_questions_in_context(asks: list[QuestionToStore]) -> list[AskWritten]:
    """`create_question_in_context` for each of many asks, in one trip to the database thread
    and one transaction: a burst of questions pays one hop and one commit. One that is refused
    is refused alone; its error is returned in its place, for its asker.

    Written together (`_write_asks_together`): the rooms, the askers' access, the repeated
    `client_id`s and the new rows each take one statement for the whole batch (one per ask,
    in eleven statements each, was most of a worker's database thread under a crowd). Where
    that cannot be (an edit among them, whose checks are its own; a room or a `client_id`
    made by another connection meanwhile), each ask is written alone, in a savepoint of its
    own, as `create_question_in_context` writes one."""
    if all(ask.edits is None for ask in asks):
        try:
            with transaction.atomic():
                return _write_asks_together(asks)
        except (IntegrityError, _OneByOne):
            pass
    return _each_in_a_savepoint(asks, write_ask)


def write_ask(ask: QuestionToStore) -> tuple[StoredQuestion, list[Message]]:
    """One ask written on its own (`create_question_in_context`), as a batch writes it when it
    cannot write its asks together."""
    return create_question_in_context(
        ask.room_name,
        context_limit=ask.context_limit,
        message_id=ask.message_id,
        identity=ask.identity,
        text=ask.text,
        client_id=ask.client_id,
        edits=ask.edits,
        answer_id=ask.answer_id,
    )


class _OneByOne(Exception):
    """The batch must be written ask by ask (`create_questions_in_context`)."""


def _write_asks_together(asks: list[QuestionToStore]) -> list[AskWritten]:
    """Every ask's row in a few statements; see `create_questions_in_context`."""
    names = list(dict.fromkeys(ask.room_name for ask in asks))
    by_name = {room.name: room for room in Room.objects.filter(name__in=names)}
    # Rooms nothing was said in yet get their row now (public, no owner, no members).
    new = Room.objects.bulk_create([Room(name=name) for name in names if name not in by_name])
    if any(room.pk is None for room in new):  # a database that returns no ids from a bulk insert
        raise _OneByOne
    by_name.update((room.name, room) for room in new)
    fresh = frozenset(room.pk for room in new)
    accesses = rooms.accesses_to(
        [(by_name[ask.room_name], ask.identity) for ask in asks], without_members=fresh
    )
    # Repeats of a client_id asked before (a new room has none): one query for them all.
    repeat_of: dict[tuple[int, str, str], Message] = {}
    earlier = [
        Q(room_id=by_name[ask.room_name].pk, user_id=ask.identity.id, client_id=ask.client_id)
        for ask in asks
        if ask.client_id and by_name[ask.room_name].pk not in fresh
    ]
    if earlier:
        for message in Message.objects.filter(functools.reduce(operator.or_, earlier)):
            repeat_of[(message.room_id, message.user_id, message.client_id)] = message
    written: list[tuple[Message, bool] | Exception] = []
    rows: list[Message] = []
    for ask, access in zip(asks, accesses, strict=True):
        room = by_name[ask.room_name]
        try:
            access.check_enter()
        except ProtocolError as err:
            if room.pk in fresh:  # a room made for a refused ask: write them one by one
                raise _OneByOne from err
            written.append(err)
            continue
        key = (room.pk, ask.identity.id, ask.client_id or "")
        if ask.client_id and key in repeat_of:
            # Asked before, or earlier in this batch (a second connection, a double send).
            written.append((repeat_of[key], False))
            continue
        message = Message(
            id=ask.message_id,
            room=room,
            role=Message.Role.USER,
            text=ask.text,
            status=Message.Status.COMPLETE,
            user_id=ask.identity.id,
            user_name=ask.identity.name,
            client_id=ask.client_id or "",
            created=timezone.now(),
        )
        rows.append(message)
        if ask.client_id:
            repeat_of[key] = message
        written.append((message, True))
    stored_of: list[StoredQuestion | Exception] = []
    first_said: set[int] = set()
    for ask, done in zip(asks, written, strict=True):
        if isinstance(done, Exception):
            stored_of.append(done)
            continue
        message, created = done
        room = by_name[ask.room_name]
        first = room.pk in fresh and created and room.pk not in first_said
        if first:
            first_said.add(room.pk)
        question = StoredQuestion.of(message, room, created=created, first_in_room=first)
        stored_of.append(question)
        if created and ask.answer_id is not None:
            rows.append(_answer_row(ask.answer_id, question, ask.identity))
    # The questions first, then their answers, in one statement.
    Message.objects.bulk_create(rows)
    results: list[AskWritten] = []
    for ask, stored in zip(asks, stored_of, strict=True):
        if isinstance(stored, Exception):
            results.append(stored)
        elif not stored.created or stored.first_in_room:
            results.append((stored, []))
        else:
            # After the batch's rows: an earlier ask of this batch in the room is before it.
            conversation = _conversation_before(
                stored.room_id, before=stored.created_at, limit=ask.context_limit
            )
            results.append((stored, conversation))
    return results


def create_message(
    room_name: str, *, message_id: str, identity: Identity, text: str, client_id: str | None
) -> StoredQuestion:
    """Store a person's plain message (`say`), as `create_question` stores a question: the
    same access check, the same once-per-`client_id`."""
    return _create_said(
        room_name,
        role=Message.Role.MESSAGE,
        message_id=message_id,
        identity=identity,
        text=text,
        client_id=client_id,
    )


def _create_said(
    room_name: str,
    *,
    role: str,
    message_id: str,
    identity: Identity,
    text: str,
    client_id: str | None,
    edits: str | None = None,
) -> StoredQuestion:
    # The room's row, made now if this is the first thing said in it: a room nobody wrote
    # anything in has no row (joining, reading, a resume leave nothing in the database).
    room, room_is_new = Room.objects.get_or_create(name=room_name)
    rooms.access_to(room, room_name, identity).check_enter()

    def stored(message: Message, created: bool) -> StoredQuestion:
        return StoredQuestion.of(
            message, room, created=created, first_in_room=room_is_new and created
        )

    # A client_id is the person's own in the room, whether it went with an ask or a say.
    if client_id:
        existing = Message.objects.filter(
            room=room, user_id=identity.id, client_id=client_id
        ).first()
        if existing is not None:
            return stored(existing, False)
    try:
        with transaction.atomic():
            message = Message.objects.create(
                id=message_id,
                room=room,
                role=role,
                text=text,
                status=Message.Status.COMPLETE,
                user_id=identity.id,
                user_name=identity.name,
                client_id=client_id or "",
                created=timezone.now(),
                edits_id=edits,
            )
    except IntegrityError:
        # The same client_id raced in from a second connection: the first one wins.
        existing = Message.objects.get(room=room, user_id=identity.id, client_id=client_id)
        return stored(existing, False)
    return stored(message, True)


@dataclass(frozen=True, slots=True)
class RedactedMessage:
    id: str
    streaming: bool  # an answer still being written


def redact_message(
    room_name: str, moderator: Identity, *, message_id: str | None, seq: int | None
) -> RedactedMessage:
    """Take a message's text out of the database for good (a moderator's `redact`). Named by
    id, or by the seq of the event that posted it (a question, a message, an answer's start
    or end). `not_found` for anything else; `forbidden` for someone who may not moderate."""
    room = Room.objects.filter(name=room_name).first()
    rooms.access_to(room, room_name, moderator).check_moderate()
    found = Message.objects.filter(room=room) if room is not None else Message.objects.none()
    if message_id is not None:
        found = found.filter(id=message_id)
    else:
        found = found.filter(Q(seq=seq) | Q(end_seq=seq, role=Message.Role.ASSISTANT))
    message = found.first()
    if message is None:
        raise ProtocolError("not_found", "There is no such message in this room.")
    Message.objects.filter(pk=message.pk).update(text="", redacted=True)
    return RedactedMessage(id=message.id, streaming=message.status == Message.Status.STREAMING)


def forget_unposted(message_id: str) -> None:
    """Delete a question or message that was stored but never reached the room log (it was
    refused as `unavailable`): nobody saw it, and its `client_id` is free again. The answer
    row made with a question goes with it."""
    Message.objects.filter(
        Q(id=message_id, seq__isnull=True)
        | Q(question_id=message_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)
    ).delete()


def set_seq(message_id: str, seq: int) -> None:
    Message.objects.filter(id=message_id).update(seq=seq)


@dataclass(frozen=True, slots=True)
class Posted:
    """A question (or a person's message) that reached its room's log, at `seq`."""

    message_id: str
    room_name: str
    seq: int


def question_posted(message_id: str, room_name: str, seq: int) -> None:
    """Record a question's (or a person's message's) seq and the room's progress, in one trip
    to the database thread."""
    questions_posted([Posted(message_id=message_id, room_name=room_name, seq=seq)])


def questions_posted(posts: list[Posted]) -> list[None]:
    """`question_posted` for many, in one transaction and two statements
    (`_seqs_together`)."""
    _seqs_together("seq", [(post.message_id, post.room_name, post.seq) for post in posts])
    return [None] * len(posts)


def _seqs_together(column: str, rows: list[tuple[str, str, int]]) -> None:
    """For each (message id, room name, seq): the message's `column` (`seq`, `end_seq`), and
    each room's activity and the highest seq it reached. Two statements, each run for all
    the rows (`executemany`), in one transaction: the ORM's update of many rows with a value
    each (a CASE of one WHEN per row) cost more CPU to build than the update itself, and this
    runs twice for every answer."""
    quote = connection.ops.quote_name
    messages, rooms_table = quote(Message._meta.db_table), quote(Room._meta.db_table)
    reached: dict[str, int] = {}
    for _, room_name, seq in rows:
        reached[room_name] = max(seq, reached.get(room_name, seq))
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {messages} SET {quote(column)} = %s WHERE id = %s",
            [(seq, message_id) for message_id, _, seq in rows],
        )
        cursor.executemany(
            f"UPDATE {rooms_table} SET last_activity = %s, "
            "last_seq = CASE WHEN last_seq < %s THEN %s ELSE last_seq END WHERE name = %s",
            [(now, seq, seq, name) for name, seq in reached.items()],
        )


def _answer_row(answer_id: str, question: StoredQuestion, asker: Identity) -> Message:
    """A first answer's row (unsaved), streaming, made in its question's write: it exists
    before anything of the answer reaches the room (a cancel, a redaction find it), and the
    answer's start has no row to wait for."""
    return Message(
        id=answer_id,
        room_id=question.room_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        question_id=question.id,
        user_id=asker.id,
        user_name=asker.name,
        created=timezone.now(),
    )


def checkpoint_answers(texts: dict[str, str]) -> None:
    """Save the text so far of answers still streaming (survives a crash of this process), by
    answer id, in one transaction: one statement run for every answer (`executemany`). An ORM
    update each held the one database thread for about 0.3 ms an answer, every 2 s, in front
    of the questions' writes."""
    table = connection.ops.quote_name(Message._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET text = %s WHERE id = %s AND status = %s AND redacted = %s",
            [
                (text, answer_id, Message.Status.STREAMING, False)
                for answer_id, text in texts.items()
            ],
        )


@dataclass(frozen=True, slots=True)
class EndRow:
    """What the database stores of an answer's end."""

    status: str
    text: str
    sources: list[dict[str, Any]] | None = None  # None: the row keeps its own
    usage: dict[str, int] | None = None
    error: dict[str, str] | None = None
    # The seq of its `answer.start`, recorded with the end rather than in a round trip of its
    # own on the way to the first token.
    seq: int | None = None


def finish_answer(answer_id: str, end: EndRow) -> bool:
    """Store an answer's end, once: False when it had already ended."""
    updates: dict[str, Any] = {
        "status": end.status,
        # An answer redacted while it was being written keeps no text.
        "text": Case(When(redacted=True, then=Value("")), default=Value(end.text)),
        "usage": end.usage,
        "error": end.error,
        "finished": timezone.now(),
    }
    if end.sources is not None:
        updates["sources"] = end.sources
    if end.seq is not None:
        updates["seq"] = end.seq
    count = Message.objects.filter(id=answer_id, status=Message.Status.STREAMING).update(**updates)
    return count == 1


def set_end_seq(answer_id: str, seq: int, room_name: str) -> None:
    _seqs_together("end_seq", [(answer_id, room_name, seq)])


def finish_answers(ends: list[tuple[str, EndRow]]) -> list[bool | Exception]:
    """`finish_answer` for each of many (answer id, end), in one trip to the database thread
    and one transaction (a burst of answers ending together)."""
    return _each_in_a_savepoint(ends, lambda end: finish_answer(*end))


def set_end_seqs(ends: list[tuple[str, int, str]]) -> list[Exception | None]:
    """`set_end_seq` for each of many (answer id, seq, room), in one trip, one transaction
    and two statements (`_seqs_together`)."""
    _seqs_together("end_seq", [(answer_id, room, seq) for answer_id, seq, room in ends])
    return [None] * len(ends)


def store_logged_end(answer_id: str, end: EndRow, *, room_name: str, end_seq: int) -> bool:
    """Store an end the room log already holds at `end_seq` (it was appended while the
    database was away), with its seq; safe to repeat, for retries. False when the row holds a
    different end, which is left as it is."""
    try:
        with transaction.atomic():
            if not finish_answer(answer_id, end):
                # Already stored: by an earlier try whose reply the outage swallowed, or by
                # another worker's repair from the same end in the log. Anything else is not
                # this end, and not ours to overwrite.
                row = (
                    Message.objects.filter(id=answer_id)
                    .values_list("status", "text", "redacted")
                    .first()
                )
                if row is None or row[0] != end.status or (row[1] != end.text and not row[2]):
                    return False
            set_end_seq(answer_id, end_seq, room_name)
    except Error:
        # A connection the outage broke fails every call made on it: drop it, so that the
        # next try connects afresh.
        with contextlib.suppress(Error):
            connection.close()
        raise
    return True


def streaming_answers(room_names: list[str], *, since: datetime) -> dict[str, list[str]]:
    """Ids of the answers still `streaming` in these rooms, created since `since`, by room
    (one query on the (room, created) index)."""
    rows = Message.objects.filter(
        room__name__in=room_names,
        created__gte=since,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
    ).values_list("room__name", "id")
    found: dict[str, list[str]] = {}
    for room_name, answer_id in rows:
        found.setdefault(room_name, []).append(answer_id)
    return found


def repair_end(answer_id: str, end: EndRow, *, room_name: str, log_seq: int) -> bool:
    """Store the end the room log holds for an answer still `streaming` here (its worker
    appended it while the database was away, and died or gave up before storing it), and the
    seq the log has reached. False when the answer is no longer streaming."""
    stored = finish_answer(answer_id, end)
    if stored:
        touch_room(room_name, log_seq)
    return stored


def answer_info(answer_id: str) -> dict[str, Any] | None:
    """Who asked an answer, in which room, and its status; None when there is no such answer."""
    row = (
        Message.objects.filter(id=answer_id, role=Message.Role.ASSISTANT)
        .values("room__name", "user_id", "status", "text", "question_id", "error")
        .first()
    )
    if row is None:
        return None
    return {
        "room": row["room__name"],
        "asker_id": row["user_id"],
        "status": row["status"],
        "text": row["text"],
        "question_id": row["question_id"],
        "error": row["error"],
    }


def answer_and_access(
    answer_id: str, room_name: str, identity: Identity
) -> tuple[dict[str, Any] | None, rooms.Access]:
    """`answer_info`, and what `identity` may do in `room_name`, in one trip."""
    return answer_info(answer_id), rooms.access(room_name, identity)


def to_history(message: Message) -> dict[str, Any]:
    """A stored message as the protocol's `history` item."""
    item: dict[str, Any] = {
        "id": message.id,
        "role": message.role,
        "text": message.text,
        "status": message.status,
        "created": iso(message.created),
    }
    if message.seq is not None:
        item["seq"] = message.seq
    if message.redacted:
        item["redacted"] = True
    if message.role in (Message.Role.USER, Message.Role.MESSAGE):
        item["user"] = {"id": message.user_id, "name": message.user_name}
        if message.client_id:
            item["client_id"] = message.client_id
        if message.edits_id:
            item["edits"] = message.edits_id
    else:
        item["question_id"] = message.question_id
        item["version"] = message.version
        if message.continues_id:
            item["continues"] = message.continues_id
        item["sources"] = message.sources or []
        if message.error:
            item["error"] = message.error
        if message.usage:
            item["usage"] = message.usage
        feedback = feedback_of(message)
        if feedback is not None:
            item["feedback"] = feedback
    return item


def feedback_of(message: Message) -> dict[str, int] | None:
    """An answer's `feedback` as history items carry it (`{"up", "down", "rev"}`), None when
    nobody ever gave any. Select `feedback_count` with the message (`select_related`)."""
    try:
        count = message.feedback_count
    except FeedbackCount.DoesNotExist:
        return None
    if count.rev == 0 and count.up == 0 and count.down == 0:
        return None
    return {"up": count.up, "down": count.down, "rev": count.rev}


@dataclass(frozen=True, slots=True)
class StoredRoom:
    """What the database knows of a room's log: the highest seq it saw, its latest messages
    (as `history` items, oldest first)."""

    last_seq: int
    messages: list[dict[str, Any]]


def seed_room(room_name: str, limit: int, *, orphans_before: datetime | None) -> StoredRoom:
    """How a room log that holds nothing for this room starts: from the database.

    With `orphans_before` (one process: nothing else can be writing them) answers left
    `streaming` by a previous run, started before this one, are marked `interrupted`, keeping
    their saved text. (Not this run's own: a room seeded again after its state was evicted may
    have an end still being stored.)
    """
    room = Room.objects.filter(name=room_name).first()
    if room is None:
        return StoredRoom(last_seq=0, messages=[])  # nothing was ever written here
    if orphans_before is not None:
        Message.objects.filter(
            room=room, status=Message.Status.STREAMING, created__lt=orphans_before
        ).update(
            status=Message.Status.INTERRUPTED,
            error={
                "code": "interrupted",
                "message": "The server restarted while this answer was being written.",
            },
            finished=timezone.now(),
        )
    rows = list(
        Message.objects.filter(room=room)
        .select_related("feedback_count")
        .order_by("-created", "-id")[:limit]
    )
    rows.reverse()
    return StoredRoom(last_seq=room.last_seq, messages=[to_history(m) for m in rows])


def context_messages(room_name: str, *, before_id: str, limit: int) -> list[Message]:
    """The room's last messages before a question: the conversation the LLM sees. People's
    messages and questions, and the answers that completed; never what a moderator removed.
    Of a question answered several times, only its latest complete version; a question its
    asker edited and sent again is left out, with its answers (the edited one stands)."""
    question = Message.objects.only("room_id", "created").get(id=before_id, room__name=room_name)
    return _conversation_before(question.room_id, before=question.created, limit=limit)


def _conversation_before(room_id: int, *, before: datetime, limit: int) -> list[Message]:
    """`context_messages` of the question made at `before` in the room `room_id`."""
    recent = (
        Message.objects.filter(room_id=room_id, created__lt=before)
        .filter(
            Q(role__in=(Message.Role.USER, Message.Role.MESSAGE))
            | Q(status=Message.Status.COMPLETE)
        )
        .exclude(redacted=True)
        .exclude(text="")
        .exclude(edited_by__isnull=False)
        .exclude(question__edited_by__isnull=False)
        .distinct()
    )
    # Room for the versions left out below; kept to `limit` after.
    rows = list(recent.order_by("-created")[: limit * 2])
    kept: list[Message] = []
    answered: set[str] = set()
    for row in rows:  # newest first: the first complete version of a question is its latest
        if row.role == Message.Role.ASSISTANT and row.question_id is not None:
            if row.question_id in answered:
                continue
            answered.add(row.question_id)
        kept.append(row)
        if len(kept) == limit:
            break
    kept.reverse()
    return kept


def api_token_user(key: str, *, touch_after: timedelta) -> Any | None:
    """The active user an API key belongs to, or None. Its `last_used` is written at most every
    `touch_after`, not on every request."""
    token = ApiToken.objects.select_related("user").filter(key_hash=ApiToken.hash_key(key)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used is None or now - token.last_used > touch_after:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    return token.user


def iso_now() -> str:
    return iso(timezone.now())
