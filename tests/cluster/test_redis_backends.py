"""The Redis room log and coordinator in this process, against a real (throwaway) Redis: the
same behaviour as the in-memory log (the same events give the same frames, snapshots and
backlogs), trimming, seeding after data loss, and a reader that survives a Redis restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from chat import protocol
from chat.realtime.channel_layer import RedisChannelLayer
from chat.realtime.coordination import AnswerSlot, SlotLimits
from chat.realtime.log import SEQ_RESTART_GAP, RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.realtime.redis_client import plain_handshake
from chat.realtime.redis_coordination import RedisCoordinator
from chat.realtime.redis_log import RedisRoomLog
from tests.cluster.harness import RedisServer, redis_server
from tests.conftest import wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.cluster


class Seeder:
    """What the database would say about rooms (a dict instead of a database)."""

    def __init__(self) -> None:
        self.rooms: dict[str, RoomSeed] = {}
        self.calls = 0

    async def __call__(self, room: str) -> RoomSeed:
        self.calls += 1
        return self.rooms.get(room, RoomSeed(last_seq=0))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def logs(own_redis: RedisServer) -> AsyncIterator[tuple[MemoryRoomLog, RedisRoomLog]]:
    options: dict[str, Any] = {
        "retention_events": 1000,
        "retention_seconds": 3600,
        "view_size": 4,
    }
    memory = MemoryRoomLog(seeder=Seeder(), **options)
    redis = RedisRoomLog(own_redis.url, seeder=Seeder(), **options)
    yield memory, redis
    await memory.close()
    await redis.close()


def conversation(n: int) -> list[dict[str, Any]]:
    """Events of `n` questions and answers, the last answer left streaming."""
    events: list[dict[str, Any]] = []
    for i in range(n):
        user = {"id": "g:1", "name": "Ann"}
        q, a = f"q{i}", f"a{i}"
        created = f"2025-01-01T00:00:0{i}Z"
        events += [
            protocol.question_event(id=q, user=user, text=f"Q{i}", created=created, client_id=None),
            protocol.answer_start_event(id=a, question_id=q, created=created),
            protocol.answer_sources_event(answer_id=a, sources=[{"id": "s", "title": "T"}]),
            protocol.answer_delta_event(answer_id=a, text=f"Hello {i}"),
            protocol.answer_delta_event(answer_id=a, text=" 세계"),
        ]
        if i < n - 1:
            events.append(
                protocol.answer_end_event(answer_id=a, status="complete", text=f"Hello {i} 세계")
            )
    return events


async def test_the_redis_log_behaves_like_the_memory_log(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    memory, redis = logs
    delivered: list[tuple[int, str]] = []
    assert await redis.subscribe("parity", lambda seq, frame: delivered.append((seq, frame))) == 0
    await memory.subscribe("parity", lambda seq, frame: None)
    for event in conversation(4):  # more messages than the view holds (4)
        assert await memory.append("parity", event) == await redis.append("parity", event)
    for limit in (0, 1, 3, 50):
        assert await memory.snapshot("parity", limit) == await redis.snapshot("parity", limit)
    for after in (-1, 0, 5, 22, 23, 24, 99):
        assert await memory.read_after("parity", after) == await redis.read_after("parity", after)
    assert await memory.live_answers("parity") == await redis.live_answers("parity") == ["a3"]
    assert await memory.live_answer("parity", "a3") == await redis.live_answer("parity", "a3")
    assert await redis.live_answer("parity", "a2") is None
    # The reader delivered every event, in order, as the memory log's backlog has them.
    await wait_for(lambda: len(delivered) == 23)
    assert delivered == await memory.read_after("parity", 0)


async def test_both_logs_redact_alike_and_keep_no_redacted_text(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    """A question and an ended answer are redacted, then an answer still being written: every
    reader sees them without their text, and the rest of the live answer arrives redacted."""
    memory, redis = logs
    delivered: list[tuple[int, str]] = []
    await redis.subscribe("redact", lambda seq, frame: delivered.append((seq, frame)))
    await memory.subscribe("redact", lambda seq, frame: None)
    later = [
        protocol.message_redacted_event(id="q1"),
        protocol.message_redacted_event(id="a1"),
        protocol.message_redacted_event(id="a2"),
        protocol.answer_delta_event(answer_id="a2", text="after the redaction"),
        protocol.answer_end_event(answer_id="a2", status="complete", text="Hello 2 세계 after"),
        protocol.answer_end_event(answer_id="a2", status="complete", text="again"),  # not live
    ]
    for event in [*conversation(3), *later]:
        assert await memory.append("redact", event) == await redis.append("redact", event)
    for limit in (1, 3, 50):
        assert await memory.snapshot("redact", limit) == await redis.snapshot("redact", limit)
    for after in (0, 5, 16, 19):
        assert await memory.read_after("redact", after) == await redis.read_after("redact", after)
    backlog = await redis.read_after("redact", 0)
    assert backlog is not None
    text = " ".join(frame for _, frame in backlog)
    for gone in ('"Q1"', "Hello 1", "Hello 2", "after the redaction"):
        assert gone not in text
    assert '"Q0"' in text and "Hello 0" in text  # the rest stays
    frames = {seq: json.loads(frame) for seq, frame in backlog}
    assert frames[21] == {"seq": 21, "type": "message.redacted", "id": "a2"}  # the late delta
    assert frames[22]["text"] == "" and frames[22]["redacted"] is True
    history = {m["id"]: m for m in (await redis.snapshot("redact", 50)).history}
    assert history["q1"]["text"] == "" and history["q1"]["redacted"] is True
    assert (history["a2"]["text"], history["a2"]["status"]) == ("", "complete")
    assert history["q2"]["text"] == "Q2"  # (the view holds the last 4)
    # Live readers got the late events redacted too.
    await wait_for(lambda: len(delivered) == 22)
    assert dict(delivered)[21] == backlog[20][1]


async def test_a_redacted_answer_keeps_no_search_query_in_either_log(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    """An answer's `answer.sources` may carry `query`: its question rewritten for the search,
    which keeps the question's names, codes and numbers. Redacting the answer takes the query
    out with its text: from what the logs held before (a1) and from what is appended after
    (a2, redacted while it was still searching)."""
    memory, redis = logs
    await redis.subscribe("query", lambda seq, frame: None)
    await memory.subscribe("query", lambda seq, frame: None)
    user = {"id": "g:1", "name": "Ann"}
    secret = "door code 4711"
    events = [
        protocol.question_event(id="q1", user=user, text="And that?", created=NOW, client_id=None),
        protocol.answer_start_event(id="a1", question_id="q1", created=NOW),
        protocol.answer_sources_event(answer_id="a1", sources=[], query=secret),
        protocol.answer_end_event(answer_id="a1", status="complete", text="Ask Minji."),
        protocol.message_redacted_event(id="a1"),
        protocol.question_event(id="q2", user=user, text="And this?", created=NOW, client_id=None),
        protocol.answer_start_event(id="a2", question_id="q2", created=NOW),
        protocol.message_redacted_event(id="a2"),
        protocol.answer_sources_event(answer_id="a2", sources=[], query=secret),
        protocol.answer_end_event(answer_id="a2", status="complete", text="Ask Minji."),
    ]
    for event in events:
        assert await memory.append("query", event) == await redis.append("query", event)
    for after in (0, 2, 8):
        assert await memory.read_after("query", after) == await redis.read_after("query", after)
    backlog = await redis.read_after("query", 0)
    assert backlog is not None
    sources = [json.loads(f) for _, f in backlog if '"type":"answer.sources"' in f]
    assert [(s["answer_id"], "query" in s) for s in sources] == [("a1", False), ("a2", False)]
    assert "4711" not in " ".join(frame for _, frame in backlog)
    assert await memory.snapshot("query", 50) == await redis.snapshot("query", 50)


async def test_a_redacted_question_takes_its_answers_search_query_in_either_log(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    """The query is the question's words: redacting the question takes it out of its answers'
    `answer.sources` (which name the question when they carry a query), held or appended
    later; the answers themselves stay."""
    memory, redis = logs
    await redis.subscribe("asked", lambda seq, frame: None)
    await memory.subscribe("asked", lambda seq, frame: None)
    user = {"id": "g:1", "name": "Ann"}
    secret = "door code 4711"

    def sources(answer_id: str, question_id: str) -> dict[str, Any]:
        return protocol.answer_sources_event(
            answer_id=answer_id, sources=[], query=secret, question_id=question_id
        )

    events = [
        protocol.question_event(id="q1", user=user, text=secret, created=NOW, client_id=None),
        protocol.answer_start_event(id="a1", question_id="q1", created=NOW),
        sources("a1", "q1"),
        protocol.answer_end_event(answer_id="a1", status="complete", text="Ask Minji."),
        protocol.question_event(id="q2", user=user, text=secret, created=NOW, client_id=None),
        protocol.answer_start_event(id="a2", question_id="q2", created=NOW),
        protocol.message_redacted_event(id="q1"),
        protocol.message_redacted_event(id="q2"),
        sources("a2", "q2"),
        protocol.answer_end_event(answer_id="a2", status="complete", text="Ask Minji."),
    ]
    for event in events:
        assert await memory.append("asked", event) == await redis.append("asked", event)
    for after in (0, 2, 8):
        assert await memory.read_after("asked", after) == await redis.read_after("asked", after)
    backlog = await redis.read_after("asked", 0)
    assert backlog is not None
    assert "4711" not in " ".join(frame for _, frame in backlog)
    frames = [json.loads(frame) for _, frame in backlog]
    assert [f["question_id"] for f in frames if f["type"] == "answer.sources"] == ["q1", "q2"]
    assert [f["text"] for f in frames if f["type"] == "answer.end"] == ["Ask Minji."] * 2
    assert await memory.snapshot("asked", 50) == await redis.snapshot("asked", 50)


NOW = "2025-01-01T00:00:00Z"


def talk() -> list[dict[str, Any]]:
    """People's messages (`say`) around a question and its answer, the last one streaming."""
    minji, joon = {"id": "u:1", "name": "Minji"}, {"id": "u:2", "name": "준"}

    def said(n: int, user: dict[str, str], client_id: str | None = None) -> dict[str, Any]:
        return protocol.message_event(
            id=f"m{n}",
            user=user,
            text=f"케이크 {n}",
            created=f"2025-01-01T00:01:0{n}Z",
            client_id=client_id,
        )

    conversation_events = conversation(2)
    return [
        said(0, minji),
        said(1, joon, "c-1"),
        *conversation_events[:6],
        said(2, minji),
        *conversation_events[6:8],
        said(3, joon, "c-3"),
        *conversation_events[8:],
        said(4, minji),
    ]


async def test_messages_fold_into_the_view_alike_in_both_logs(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    memory, redis = logs
    await memory.subscribe("talk", lambda seq, frame: None)
    for event in talk():  # more messages than the view holds (4): the oldest go
        assert await memory.append("talk", event) == await redis.append("talk", event)
    for limit in (0, 1, 3, 50):
        assert await memory.snapshot("talk", limit) == await redis.snapshot("talk", limit)
    for after in (0, 1, 2, 9, 16, 17):
        assert await memory.read_after("talk", after) == await redis.read_after("talk", after)
    snapshot = await redis.snapshot("talk", 50)
    assert snapshot.seq == 16
    assert [m["id"] for m in snapshot.history] == ["q1", "a1", "m3", "m4"]
    assert snapshot.history[-1] == {
        "seq": 16,
        "id": "m4",
        "role": "message",
        "text": "케이크 4",
        "status": "complete",
        "created": "2025-01-01T00:01:04Z",
        "user": {"id": "u:1", "name": "Minji"},
    }
    [m3] = [m for m in snapshot.history if m["id"] == "m3"]
    assert m3["client_id"] == "c-3" and m3["role"] == "message"
    # The answer written between the messages is still live, with its text so far.
    assert await memory.live_answers("talk") == await redis.live_answers("talk") == ["a1"]


async def test_a_room_seeded_with_messages_shows_them_alike_in_both_logs(
    own_redis: RedisServer,
) -> None:
    said = {
        "id": "m1",
        "role": "message",
        "text": "hi",
        "status": "complete",
        "created": "2025-01-01T00:00:00Z",
        "user": {"id": "u:1", "name": "Minji"},
        "client_id": "c-1",
    }
    asked = {**said, "id": "q2", "role": "user", "text": "Q", "client_id": "c-2"}
    seeder = Seeder()
    seeder.rooms["seeded"] = RoomSeed(last_seq=7, messages=[said, asked])
    options: dict[str, Any] = {"retention_events": 100, "retention_seconds": 60, "view_size": 9}
    memory = MemoryRoomLog(seeder=seeder, **options)
    redis = RedisRoomLog(own_redis.url, seeder=seeder, **options)
    after = protocol.message_event(
        id="m3", user={"id": "u:2", "name": "Joon"}, text="yes", created="t", client_id=None
    )
    assert await memory.append("seeded", after) == await redis.append("seeded", after)
    assert await memory.snapshot("seeded", 10) == await redis.snapshot("seeded", 10)
    history = (await redis.snapshot("seeded", 10)).history
    assert [(m["id"], m["role"]) for m in history] == [
        ("m1", "message"),
        ("q2", "user"),
        ("m3", "message"),
    ]
    assert history[0] == said
    await memory.close()
    await redis.close()


async def test_room_updated_is_logged_and_resumed_and_leaves_the_view_alone(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    """An event the view does not fold (the rooms issue's `room.updated`): both logs give it a
    seq, replay it on resume, and keep their history as it was."""
    memory, redis = logs
    events = conversation(2)
    for event in events:
        assert await memory.append("told", event) == await redis.append("told", event)
    before = await redis.snapshot("told", 50)
    updated = protocol.room_updated_event(room={"title": "Told", "visibility": "private"})
    seq = len(events) + 1
    assert await memory.append("told", updated) == await redis.append("told", updated) == seq
    after = await redis.snapshot("told", 50)
    assert (after.seq, after.history) == (seq, before.history)
    assert await memory.snapshot("told", 50) == after
    replay = await redis.read_after("told", seq - 1)
    assert replay == await memory.read_after("told", seq - 1)
    assert replay is not None and json.loads(replay[0][1]) == {"seq": seq, **updated}


async def test_feedback_counts_fold_by_rev_alike_in_both_logs(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    """`answer.feedback` events reach the log in the order they were appended, which across
    workers need not be the order of the changes: both views keep the counts of the highest
    rev, every event is logged and replayed."""
    memory, redis = logs
    events = conversation(1)
    for event in events:
        assert await memory.append("liked", event) == await redis.append("liked", event)
    answer_id = next(e["id"] for e in events if e["type"] == "answer.start")
    for up, down, rev in ((1, 1, 2), (1, 0, 1), (2, 1, 3)):
        event = protocol.answer_feedback_event(answer_id=answer_id, up=up, down=down, rev=rev)
        assert await memory.append("liked", event) == await redis.append("liked", event)
        shown = await redis.snapshot("liked", 50)
        assert shown == await memory.snapshot("liked", 50)
        [answer] = [m for m in shown.history if m["id"] == answer_id]
        assert answer["feedback"]["rev"] == max(rev, 2)
    assert answer["feedback"] == {"up": 2, "down": 1, "rev": 3}
    replay = await redis.read_after("liked", len(events))
    assert replay == await memory.read_after("liked", len(events))
    assert replay is not None and [json.loads(frame)["rev"] for _, frame in replay] == [2, 1, 3]


async def test_an_answer_ends_once_and_nothing_of_it_follows_its_end(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    _, log = logs
    for event in conversation(1):
        await log.append("once", event)
    end = protocol.answer_end_event(answer_id="a0", status="interrupted", text="Hello 0 세계")
    assert await log.append("once", end) == 6
    assert await log.append("once", end) is None
    assert await log.append("once", protocol.answer_delta_event(answer_id="a0", text="x")) is None
    snapshot = await log.snapshot("once", 10)
    assert snapshot.seq == 6
    assert snapshot.history[-1]["status"] == "interrupted"


async def test_the_log_is_trimmed_by_count_and_a_resume_past_it_is_refused(
    own_redis: RedisServer,
) -> None:
    log = RedisRoomLog(
        own_redis.url, seeder=Seeder(), retention_events=10, retention_seconds=3600, view_size=4
    )
    user = {"id": "g:1", "name": "Ann"}
    for i in range(600):
        event = protocol.question_event(
            id=f"q{i}", user=user, text="x", created="t", client_id=None
        )
        await log.append("trim", event)
    # Approximate trimming (MAXLEN ~) keeps at least the retention, never everything.
    assert await log.read_after("trim", 0) is None
    kept = await log.read_after("trim", 590)
    assert kept is not None and [seq for seq, _ in kept] == list(range(591, 601))
    assert await log.read_after("trim", 600) == []
    assert await log.read_after("trim", 601) is None
    await log.close()


async def test_the_live_answers_of_many_rooms_are_read_together(
    logs: tuple[MemoryRoomLog, RedisRoomLog],
) -> None:
    """The orphan reaper's look at every room of a worker at once: the same answers as one
    look per room, in the memory log and in Redis, over more rooms than one pipeline holds."""
    memory, redis = logs
    for log in logs:
        for event in conversation(2):  # a1 left streaming
            await log.append("live-one", event)
        for event in conversation(1):  # a0 left streaming
            await log.append("live-two", event)
        await log.append("live-none", conversation(1)[0])  # a question only
    rooms = ["live-one", "live-none", "live-two"] + [f"live-new-{n}" for n in range(600)]
    expected = {room: await memory.live_answers(room) for room in rooms}
    assert expected["live-one"] == ["a1"] and expected["live-two"] == ["a0"]
    assert await memory.live_answers_in(rooms) == expected
    assert await redis.live_answers_in(rooms) == expected


async def test_a_look_at_many_rooms_seeds_those_redis_lost(own_redis: RedisServer) -> None:
    """A room Redis holds nothing of is seeded from the database by the look, and an answer
    the database saw streaming is live in it (the reaper must see it to end it)."""
    seeder = Seeder()
    streaming = {"id": "a7", "role": "assistant", "text": "so far", "status": "streaming"}
    seeder.rooms["forgotten"] = RoomSeed(last_seq=12, messages=[streaming])
    log = RedisRoomLog(
        own_redis.url, seeder=seeder, retention_events=100, retention_seconds=60, view_size=9
    )
    try:
        assert await log.live_answers_in(["forgotten", "empty"]) == {
            "forgotten": ["a7"],
            "empty": [],
        }
        assert seeder.calls == 2
    finally:
        await log.close()


async def test_a_room_that_redis_lost_starts_again_above_the_database(
    own_redis: RedisServer,
) -> None:
    seeder = Seeder()
    streaming = {"id": "a9", "role": "assistant", "text": "so far", "status": "streaming"}
    done = {"id": "q9", "role": "user", "text": "Q", "status": "complete"}
    seeder.rooms["lost"] = RoomSeed(last_seq=41, messages=[done, streaming])
    logs = [
        RedisRoomLog(
            own_redis.url, seeder=seeder, retention_events=100, retention_seconds=60, view_size=9
        )
        for _ in range(2)
    ]
    # Two workers seeding at once agree on one base (SET NX).
    snapshots = await asyncio.gather(*(log.snapshot("lost", 10) for log in logs))
    assert snapshots[0] == snapshots[1]
    assert snapshots[0].seq == 41 + SEQ_RESTART_GAP
    assert [m["text"] for m in snapshots[0].history] == ["Q", "so far"]
    # An answer the database saw streaming is live again: its worker may still be writing.
    assert await logs[0].live_answers("lost") == ["a9"]
    delta = protocol.answer_delta_event(answer_id="a9", text=" and more")
    assert await logs[1].append("lost", delta) == 41 + SEQ_RESTART_GAP + 1
    assert (await logs[0].live_answer("lost", "a9") or {})["text"] == "so far and more"
    assert await logs[0].read_after("lost", 41) is None  # the cursor of the lost data
    for log in logs:
        await log.close()


async def test_the_reader_survives_a_redis_restart_and_reports_the_jump(
    own_redis: RedisServer,
) -> None:
    seeder = Seeder()
    log = RedisRoomLog(
        own_redis.url,
        seeder=seeder,
        retention_events=100,
        retention_seconds=60,
        view_size=9,
        block_seconds=1.0,
    )
    seen: list[int] = []
    await log.subscribe("boom", lambda seq, frame: seen.append(seq))
    user = {"id": "g:1", "name": "Ann"}
    question = protocol.question_event(id="q1", user=user, text="x", created="t", client_id=None)
    await log.append("boom", question)
    await wait_for(lambda: seen == [1])
    seeder.rooms["boom"] = RoomSeed(last_seq=1, messages=[])  # what the database knew
    await asyncio.to_thread(own_redis.restart)
    await log.append("boom", {**question, "id": "q2"})
    # The reader reconnected by itself and delivered the new event, seq far above the old.
    await wait_for(lambda: len(seen) == 2, timeout=20)
    assert seen[1] == 1 + SEQ_RESTART_GAP + 1
    await log.close()


async def test_subscribing_wakes_the_blocked_reader_at_once(own_redis: RedisServer) -> None:
    log = RedisRoomLog(
        own_redis.url, seeder=Seeder(), retention_events=100, retention_seconds=60, view_size=9
    )
    seen: list[str] = []
    await log.subscribe("first", lambda seq, frame: seen.append("first"))
    await asyncio.sleep(0.2)  # let the reader block in XREAD (10 s) on the first room only
    await log.subscribe("second", lambda seq, frame: seen.append("second"))
    user = {"id": "g:1", "name": "Ann"}
    event = protocol.question_event(id="q", user=user, text="x", created="t", client_id=None)
    await log.append("second", event)
    await wait_for(lambda: seen == ["second"], timeout=2)
    await log.close()


async def test_coordinator_presence_slots_and_leases(own_redis: RedisServer) -> None:
    a = RedisCoordinator(own_redis.url, worker_id="wa", lease_seconds=1)
    b = RedisCoordinator(own_redis.url, worker_id="wb", lease_seconds=1)
    await a.refresh([], lease_seconds=1)  # notes Redis' data epoch: no grace from here on
    await a.presence_add("p", "c1", {"id": "u1", "name": "Ann"})
    await b.presence_add("p", "c2", {"id": "u2", "name": "Bob"})
    await b.presence_add("p", "c3", {"id": "u1", "name": "Ann"})  # a second tab
    assert await a.members("p") == [{"id": "u1", "name": "Ann"}, {"id": "u2", "name": "Bob"}]
    limits = SlotLimits(per_user=1, per_room=2, per_address=1, total=3)
    assert await a.reserve_answer(AnswerSlot("p", "u1", "x1"), limits)
    # Per user, across workers:
    assert (await b.reserve_answer(AnswerSlot("p", "u1", "x2"), limits)).limit == "user"
    assert await b.reserve_answer(AnswerSlot("p", "u2", "x3"), limits)
    assert (await b.reserve_answer(AnswerSlot("p", "u3", "x4"), limits)).limit == "room"
    await a.claim("x1", control_channel="chan-a", lease_seconds=1)
    assert await b.owner_channel("x1") == "chan-a"
    await a.refresh(["x1"], lease_seconds=1)
    await b.release_answer(AnswerSlot("p", "u2", "x3"))
    assert await b.reserve_answer(AnswerSlot("p", "u3", "x4"), limits)
    # Worker b dies: no more refreshes. Its lease, heartbeat and slots run out.
    await b.close()
    await a.presence_add("p", "c4", {"id": "u5", "name": "Eve"})  # a is alive
    await asyncio.sleep(3.2)
    assert await a.members("p") == [{"id": "u1", "name": "Ann"}, {"id": "u5", "name": "Eve"}]
    assert await a.owner_channel("x1") is None  # a did not refresh either
    await a.disown("x1")
    await a.close()


async def connected_clients(url: str) -> int:
    client = Redis.from_url(url)
    try:
        return int((await client.info("clients"))["connected_clients"]) - 1  # not this one
    finally:
        await client.aclose()


async def test_joins_and_leaves_arriving_together_share_one_round_trip(
    own_redis: RedisServer,
) -> None:
    """A reconnect storm is thousands of joins at once: one round trip each took every pooled
    connection, and joins were refused after waiting 10 s for one (docs/benchmarks.md)."""
    a = RedisCoordinator(own_redis.url, worker_id="wa", lease_seconds=2)
    await a.presence_add("warm", "c", {"id": "u0", "name": "Warm"})  # its one connection
    people = [(f"r{i % 4}", f"c{i}", {"id": f"u{i}", "name": f"P{i}"}) for i in range(40)]
    lists = await asyncio.gather(*(a.presence_join(*person) for person in people))
    assert await connected_clients(own_redis.url) == 1
    for (room, _, member), members in zip(people, lists, strict=True):
        # Everyone of the burst in that room, itself included, in order of arrival.
        assert members == [m for r, _, m in people if r == room]
        assert member in members
    # And a crowd leaving at once (the same one round trip).
    await asyncio.gather(*(a.presence_remove(room, conn_id) for room, conn_id, _ in people))
    assert await connected_clients(own_redis.url) == 1
    assert [await a.members(f"r{i}") for i in range(4)] == [[], [], [], []]
    await a.close()


async def test_a_join_given_up_on_its_way_leaves_no_ghost(own_redis: RedisServer) -> None:
    """Leaving while the join's round trip is in flight: the removal waits for it, else the
    join could land after the removal and stay in the member list for good."""
    a = RedisCoordinator(own_redis.url, worker_id="wa", lease_seconds=2)
    for attempt in range(20):
        room = f"g{attempt}"
        join = asyncio.create_task(a.presence_join(room, "c1", {"id": "u1", "name": "Ann"}))
        await wait_for(lambda key=(room, "c1"): key in a._joining, interval=0)  # on its way
        join.cancel()
        await a.presence_remove(room, "c1")
        with contextlib.suppress(asyncio.CancelledError):
            await join
        assert await a.members(room) == []
    await a.close()


async def test_our_clients_connect_without_commands_redis_7_0_refuses(
    own_redis: RedisServer,
) -> None:
    """redis-py 8 sends CLIENT SETINFO (twice) and CLIENT MAINT_NOTIFICATIONS on every new
    connection; Redis before 7.2 (Debian 12's 7.0) answers each with an error: wasted replies
    per connection, failed calls in the operator's `INFO`, and once read by the wrong command
    after a slow connect. The coordinator's, the room log's and the channel layer's clients."""
    probe = Redis.from_url(own_redis.url, **plain_handshake())
    await probe.config_resetstat()
    coordinator = RedisCoordinator(own_redis.url, worker_id="wa", lease_seconds=2)
    log = RedisRoomLog(
        own_redis.url, seeder=Seeder(), retention_events=10, retention_seconds=60, view_size=4
    )
    layer = RedisChannelLayer(hosts=[{"address": own_redis.url}])
    try:
        await coordinator.presence_add("p", "c1", {"id": "u1", "name": "Ann"})
        await log.subscribe("p", lambda seq, frame: None)  # and its reader connects
        await layer.group_add("room", "specific.one!x")

        async def reader_connected() -> bool:
            return "cmdstat_xread" in await probe.info("commandstats")

        await wait_for(reader_connected)
        errors = await probe.info("errorstats")
        # NOSCRIPT is expected: a script's first run loads it.
        assert set(errors) <= {"errorstat_NOSCRIPT"}, errors
    finally:
        await probe.aclose()
        await coordinator.close()
        await log.close()
        await layer.flush()


async def test_group_send_many_delivers_what_group_send_would(own_redis: RedisServer) -> None:
    """Presence notices of many rooms go out in one batch: every worker in a group gets its
    group's message once, as from channels_redis' `group_send`, and a channel at its capacity
    skips what does not fit, as there."""
    a = RedisChannelLayer(hosts=[{"address": own_redis.url}], capacity=2)
    b = RedisChannelLayer(hosts=[{"address": own_redis.url}])  # another worker
    channel_a, channel_b = await a.new_channel(), await b.new_channel()
    await a.group_add("room.one", channel_a)
    await b.group_add("room.one", channel_b)
    await b.group_add("room.two", channel_b)
    sends = [
        (f"room.{room}", {"type": "presence.changed", "room": room})
        for room in ("one", "two", "nobody")
    ]
    await a.group_send_many(sends)
    assert await a.receive(channel_a) == {"type": "presence.changed", "room": "one"}
    got = [await b.receive(channel_b) for _ in range(2)]
    assert sorted(message["room"] for message in got) == ["one", "two"]
    # The sender's capacity (2 a channel), as with group_send: the third is dropped.
    await a.group_send_many([("room.one", {"type": "n", "n": n}) for n in range(3)])
    for layer, channel in ((a, channel_a), (b, channel_b)):
        assert [(await layer.receive(channel))["n"] for _ in range(2)] == [0, 1]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.5)
    await a.flush()
    await b.flush()


ONE_PER_USER = SlotLimits(per_user=1, per_room=5, per_address=5, total=100)


async def test_limits_hold_across_workers_for_the_server_and_guest_addresses(
    own_redis: RedisServer,
) -> None:
    """What one worker would allow, N workers allow too, not N times it (the hardening issue,
    "LLM cost")."""
    a = RedisCoordinator(own_redis.url, worker_id="wa", lease_seconds=2)
    b = RedisCoordinator(own_redis.url, worker_id="wb", lease_seconds=2)
    limits = SlotLimits(per_user=5, per_room=50, per_address=2, total=3)
    # Guests from one address, each a new identity: two run, the third is refused there.
    assert await a.reserve_answer(AnswerSlot("r1", "g:1", "x1", address="10.0.0.9"), limits)
    assert await b.reserve_answer(AnswerSlot("r2", "g:2", "x2", address="10.0.0.9"), limits)
    third = AnswerSlot("r3", "g:3", "x3", address="10.0.0.9")
    assert (await a.reserve_answer(third, limits)).limit == "address"
    # The whole server: three at once, whichever worker asks.
    assert await b.reserve_answer(AnswerSlot("r4", "u:1", "x4"), limits)
    assert (await a.reserve_answer(AnswerSlot("r5", "u:2", "x5"), limits)).limit == "total"
    await a.release_answer(AnswerSlot("r1", "g:1", "x1", address="10.0.0.9"))
    assert await b.reserve_answer(third, limits)
    # One token bucket for everyone: a burst of 3 over two workers, then a wait.
    taken = [await c.take_token("ask:user:u:1", rate=0.5, burst=3) for c in (a, b, a, b)]
    assert taken[:3] == [0.0, 0.0, 0.0] and 1.0 < taken[3] <= 2.0
    assert await b.take_token("ask:user:u:2", rate=0.5, burst=3) == 0.0
    await a.close()
    await b.close()


async def test_coordinator_publishes_its_state_again_after_redis_lost_it(
    own_redis: RedisServer,
) -> None:
    a = RedisCoordinator(own_redis.url, worker_id="wa", lease_seconds=2)
    b = RedisCoordinator(own_redis.url, worker_id="wb", lease_seconds=2)
    await a.presence_add("p", "c1", {"id": "u1", "name": "Ann"})
    await a.reserve_answer(AnswerSlot("p", "u1", "x1"), ONE_PER_USER)
    await a.claim("x1", control_channel="chan-a", lease_seconds=2)
    await a.refresh(["x1"], lease_seconds=2)
    await asyncio.to_thread(own_redis.restart)

    async def owner() -> str | None:
        return await b.owner_channel("x1")

    # Right after the loss, b waits for the owner to claim again instead of calling it dead.
    pending = asyncio.create_task(owner())
    await asyncio.sleep(0.5)
    await a.refresh(["x1"], lease_seconds=2)
    assert await pending == "chan-a"
    assert await b.members("p") == [{"id": "u1", "name": "Ann"}]
    assert not await b.reserve_answer(AnswerSlot("p", "u1", "x2"), ONE_PER_USER)
    await a.close()
    await b.close()


async def test_an_append_whose_reply_is_lost_is_retried_without_appending_twice(
    own_redis: RedisServer,
) -> None:
    """The append ran in Redis, the reply was lost with the connection, redis-py retried it:
    the retry gets the first try's seq, and the room has the event once (the hardening
    issue, item 12). Through a proxy that drops the reply."""
    with TcpProxy("127.0.0.1", own_redis.port) as proxy:
        log = RedisRoomLog(
            f"redis://{proxy.url_host}/0",
            seeder=Seeder(),
            retention_events=1000,
            retention_seconds=3600,
            view_size=50,
        )
        try:
            user = {"id": "u", "name": "U"}
            seqs = []
            for n in range(6):
                if n in (2, 4):
                    proxy.drop_next_reply()
                event = protocol.question_event(
                    id=f"q{n}", user=user, text=f"question {n}", created="t", client_id=None
                )
                seqs.append(await log.append("lossy", event))
            assert proxy.replies_dropped == 2
            assert seqs == [1, 2, 3, 4, 5, 6]
            events = await log.read_after("lossy", 0)
            assert events is not None
            assert [seq for seq, _ in events] == [1, 2, 3, 4, 5, 6]
            assert [json.loads(frame)["id"] for _, frame in events] == [f"q{n}" for n in range(6)]
        finally:
            await log.close()
