"""A burst of asks is written together: the rooms, the askers' access, the repeated
`client_id`s and the new rows (the questions' and their answers') take one statement each for
the whole batch (`storage.create_questions_in_context`), and the posted questions' seqs
likewise (`storage.questions_posted`). What a batch gives each asker is what writing the asks
one by one gives; where it cannot be written together (a conflict), it is written one by one,
and only the ask at fault fails."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import storage
from chat.identity import Identity, from_user
from chat.models import Message, Room, RoomMembership
from chat.protocol import ProtocolError
from tests.conftest import ask_to_store

pytestmark = pytest.mark.django_db(transaction=True)

GUEST = Identity(id="g:gil", name="Gil", is_guest=True)
REMOVED_GUEST = Identity(id="g:rex", name="Rex", is_guest=True)


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The SQL run, without the transaction's own BEGIN, COMMIT and savepoints."""
    skip = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(skip)]


def test_a_batch_of_asks_costs_the_same_few_statements_whatever_its_size() -> None:
    """Ten asks to ten new rooms: one read of the rooms, one insert of the rooms, one of the
    questions (each ask alone took eight statements: 80 here)."""
    for size in (1, 10):
        asks = [ask_to_store(f"new-{size}-{i}", f"q_{size}_{i}", GUEST, "Hi?") for i in range(size)]
        with CaptureQueriesContext(connection) as queries:
            written = storage.create_questions_in_context(asks)
        assert all(not isinstance(w, Exception) and w[0].first_in_room for w in written)
        assert len(statements(queries)) == 3, statements(queries)


def _world(prefix: str) -> dict[str, Identity]:
    """Rooms and people of every kind the access rule knows, named under `prefix`."""
    owner = User.objects.create_user(f"{prefix}-owner")
    member = User.objects.create_user(f"{prefix}-member")
    stranger = User.objects.create_user(f"{prefix}-stranger")
    staff = User.objects.create_user(f"{prefix}-staff", is_staff=True)
    private = Room.objects.create(name=f"{prefix}-private", visibility="private", owner=owner)
    RoomMembership.objects.create(room=private, user=member, role="member")
    public = Room.objects.create(name=f"{prefix}-public", owner=owner)
    RoomMembership.objects.create(room=public, user=stranger, role="removed")
    RoomMembership.objects.create(room=public, guest_id=REMOVED_GUEST.id, role="removed")
    Room.objects.create(name=f"{prefix}-members-only", allow_guests=False)
    Message.objects.create(
        id=f"{prefix}-earlier",
        room=public,
        role="user",
        text="Earlier",
        user_id=GUEST.id,
        user_name=GUEST.name,
        client_id="c-earlier",
        created=timezone.now(),
    )
    people = {"owner": owner, "member": member, "stranger": stranger, "staff": staff}
    found = {name: from_user(user) for name, user in people.items()}
    identities = {name: identity for name, identity in found.items() if identity is not None}
    return {**identities, "guest": GUEST, "removed guest": REMOVED_GUEST}


# (room suffix, person, client_id): every kind of outcome, in one batch.
ASKS = [
    ("private", "owner", None),
    ("private", "member", "c1"),
    ("private", "stranger", None),  # refused: not a member
    ("private", "guest", None),  # refused
    ("private", "staff", None),
    ("public", "stranger", None),  # refused: removed
    ("public", "removed guest", None),  # refused: removed
    ("public", "guest", "c-earlier"),  # a repeat of what was asked before
    ("public", "guest", "c2"),
    ("public", "guest", "c2"),  # a double send in the same batch
    ("members-only", "guest", None),  # refused: no guests
    ("members-only", "member", None),
    ("brand-new", "guest", None),  # first in its room
    ("brand-new", "member", None),  # second: reads the first
]


def _outcomes(prefix: str, written: list[Any], ids: dict[str, str]) -> list[Any]:
    """What each asker got, with ids made comparable across the two worlds."""
    found = []
    for done in written:
        if isinstance(done, ProtocolError):
            found.append(("refused", done.code))
            continue
        assert not isinstance(done, Exception), done
        stored, context = done
        found.append(
            (
                ids.get(stored.id, stored.id).replace(prefix, "*"),
                stored.text,
                stored.created,
                stored.first_in_room,
                [m.text for m in context],
            )
        )
    return found


def _asks(prefix: str, people: dict[str, Identity]) -> tuple[list[Any], dict[str, str]]:
    asks, ids = [], {}
    for index, (room, who, client_id) in enumerate(ASKS):
        message_id = f"{prefix}-q{index}"
        ids[message_id] = f"*-q{index}"
        asks.append(
            ask_to_store(
                f"{prefix}-{room}", message_id, people[who], f"Q{index}", client_id=client_id
            )
        )
    return asks, ids


def test_a_batch_gives_each_asker_what_asking_alone_gives() -> None:
    """Owner, member, stranger, staff, guests removed or not, a room without guests, a new
    room, a repeated client_id (from before, and twice in the batch): the batch's outcome for
    each ask is the outcome of writing the asks one by one, in order."""
    together, ids_a = _asks("w1", _world("w1"))
    batch = storage.create_questions_in_context(together)
    one_by_one, ids_b = _asks("w2", _world("w2"))
    alone: list[Any] = []
    for ask in one_by_one:
        try:
            with transaction.atomic():
                alone.append(storage.write_ask(ask))
        except ProtocolError as err:
            alone.append(err)
    got, expected = _outcomes("w1", batch, ids_a), _outcomes("w2", alone, ids_b)
    assert got == expected
    # And what the asks mean, spelled out: the refusals, the repeats, the new room.
    assert [g[0] == "refused" for g in got] == [
        False, False, True, True, False, True, True, False, False, False, True, False, False,
        False,
    ]  # fmt: skip
    assert got[7][:3] == ("*-earlier", "Earlier", False)
    assert got[9][:3] == ("*-q8", "Q8", False)
    assert got[12][3:] == (True, []) and got[13][3:] == (False, ["Q12"])


def test_a_conflict_writes_the_asks_one_by_one_and_fails_only_its_own() -> None:
    """An ask whose row cannot be inserted (here its id is taken: as when another connection
    wrote the same client_id between the batch's look and its insert) fails alone; the batch
    is written again ask by ask, and the others are stored."""
    storage.create_questions_in_context([ask_to_store("taken", "q_taken", GUEST, "First")])
    written = storage.create_questions_in_context(
        [
            ask_to_store("taken", "q_ok1", GUEST, "One"),
            ask_to_store("other", "q_taken", GUEST, "Clash"),
            ask_to_store("other", "q_ok2", GUEST, "Two"),
        ]
    )
    assert isinstance(written[1], Exception)
    assert [w[0].text for w in written if not isinstance(w, Exception)] == ["One", "Two"]
    texts = set(Message.objects.values_list("text", flat=True))
    assert texts == {"First", "One", "Two"}


def test_answers_rows_are_made_with_their_questions_in_the_same_statement() -> None:
    """An ask's answer row is made in its question's write, streaming, for its asker; not
    for a refused ask, nor for a repeated client_id (that question has its answer)."""
    Room.objects.create(name="closed", allow_guests=False)
    asks = [
        ask_to_store("rows", "q1", GUEST, "One", client_id="c1"),
        ask_to_store("rows", "q2", GUEST, "Again", client_id="c1"),
        ask_to_store("closed", "q3", GUEST, "Refused"),
        ask_to_store("rows", "q4", GUEST, "Four"),
    ]
    asks = [dataclasses.replace(ask, answer_id=ask.message_id.replace("q", "a")) for ask in asks]
    with CaptureQueriesContext(connection) as queries:
        written = storage.create_questions_in_context(asks)
    assert [type(w).__name__ for w in written] == ["tuple", "tuple", "ProtocolError", "tuple"]
    inserts = [sql for sql in statements(queries) if sql.startswith('INSERT INTO "chat_message"')]
    assert len(inserts) == 1
    answers = Message.objects.filter(role="assistant").order_by("id")
    assert list(answers.values_list("id", "question_id", "status", "user_id")) == [
        ("a1", "q1", "streaming", GUEST.id),
        ("a4", "q4", "streaming", GUEST.id),
    ]
    # Each answer after its question, in the order the room will see them.
    order = list(Message.objects.filter(room__name="rows").values_list("id", flat=True))
    assert order.index("a1") > order.index("q1") and order.index("a4") > order.index("q4")


def test_an_ask_written_alone_makes_its_answer_row_too() -> None:
    """The one-by-one path (an edit among the asks, or a conflict) makes the answer's row as
    the batch does."""
    storage.create_questions_in_context([ask_to_store("alone", "q_first", GUEST, "First")])
    edit = dataclasses.replace(
        ask_to_store("alone", "q_edited", GUEST, "First, edited"), edits="q_first", answer_id="a_ed"
    )
    [written] = storage.create_questions_in_context([edit])
    assert not isinstance(written, Exception) and written[0].created
    row = Message.objects.get(id="a_ed")
    assert (row.question_id, row.status, row.role) == ("q_edited", "streaming", "assistant")


def test_questions_posted_together_store_their_seqs_in_two_statements() -> None:
    """Ten posted questions: their seqs, and their rooms' activity and highest seq, in two
    statements run for all the rows. A room keeps the highest seq it reached, never a lower
    one; a question that is gone is no error (nothing to update)."""
    asks = [ask_to_store(f"p{i % 3}", f"q_p{i}", GUEST, f"Q{i}") for i in range(10)]
    storage.create_questions_in_context(asks)
    Room.objects.filter(name="p0").update(last_seq=99)
    posts = [
        storage.Posted(message_id=f"q_p{i}", room_name=f"p{i % 3}", seq=10 + i) for i in range(10)
    ]
    posts.append(storage.Posted(message_id="q_gone", room_name="p1", seq=5))
    with CaptureQueriesContext(connection) as queries:
        assert storage.questions_posted(posts) == [None] * 11
    assert len(statements(queries)) == 2, statements(queries)
    seqs = dict(Message.objects.values_list("id", "seq"))
    assert seqs == {f"q_p{i}": 10 + i for i in range(10)}
    assert dict(Room.objects.values_list("name", "last_seq")) == {"p0": 99, "p1": 17, "p2": 18}


def test_an_unposted_question_goes_with_its_answer_row() -> None:
    """A question refused as `unavailable` after its write (the room log away) is forgotten,
    and the answer row made with it too: nobody saw either."""
    storage.create_questions_in_context([ask_to_store("gone", "q_seen", GUEST, "Seen")])
    storage.questions_posted([storage.Posted(message_id="q_seen", room_name="gone", seq=1)])
    storage.create_questions_in_context(
        [ask_to_store("gone", "q_lost", GUEST, "Lost", answer_id="a_lost")]
    )
    storage.forget_unposted("q_lost")
    assert list(Message.objects.values_list("id", flat=True)) == ["q_seen"]


def test_checkpoints_and_end_seqs_of_many_answers_are_one_and_two_statements() -> None:
    """The text so far of ten answers in one statement; one ended or redacted meanwhile keeps
    what it has. Ten ends' seqs, and their rooms' progress, in two."""
    asks = [
        ask_to_store(f"k{i % 2}", f"q_k{i}", GUEST, f"Q{i}", answer_id=f"a_k{i}") for i in range(10)
    ]
    storage.create_questions_in_context(asks)
    Message.objects.filter(id="a_k0").update(status="complete", text="Whole")
    Message.objects.filter(id="a_k1").update(redacted=True)
    with CaptureQueriesContext(connection) as queries:
        storage.checkpoint_answers({f"a_k{i}": f"So far {i}" for i in range(10)})
    assert len(statements(queries)) == 1, statements(queries)
    texts = dict(Message.objects.filter(role="assistant").values_list("id", "text"))
    assert texts == {
        "a_k0": "Whole",
        "a_k1": "",
        **{f"a_k{i}": f"So far {i}" for i in range(2, 10)},
    }
    with CaptureQueriesContext(connection) as queries:
        done = storage.set_end_seqs([(f"a_k{i}", 20 + i, f"k{i % 2}") for i in range(10)])
    assert done == [None] * 10
    assert len(statements(queries)) == 2, statements(queries)
    end_seqs = dict(Message.objects.filter(role="assistant").values_list("id", "end_seq"))
    assert end_seqs == {f"a_k{i}": 20 + i for i in range(10)}
    assert dict(Room.objects.values_list("name", "last_seq")) == {"k0": 28, "k1": 29}
