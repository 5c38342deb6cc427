"""An answer's end while the database is away, with the in-memory room log: members get the
end at once, the runner stores it when the database is back (`retry_write`), and a row left
`streaming` is repaired from the end the log holds. The database is really away: the worker's
connection is closed and its settings point at a file that cannot be opened, so every connect
fails in the driver, as when a server is unreachable."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError, connection, connections

from chat import protocol, storage
from chat.answers.admission import Admission
from chat.answers.assistant import Assistant
from chat.answers.runner import AnswerRunner
from chat.background import detached
from chat.dbretry import retry_write
from chat.identity import Identity
from chat.llm.fake import FakeLLM
from chat.realtime.coordination import MemoryCoordinator
from chat.realtime.log import RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.retrieval.base import Source
from tests.conftest import ask_to_store, wait_for

# Every test here runs database work in Django's threads (close_old_connections at least).
pytestmark = pytest.mark.django_db(transaction=True)

Reader = Callable[[str], tuple[str, str, int | None]]
ASKER = Identity(id="g:ann", name="Ann", is_guest=True)
DELTAS = ["The ", "database ", "was ", "away ", "when ", "this ", "ended."]


# --- retry_write ------------------------------------------------------------------------------


class Flaky:
    """A write that fails like an unreachable database `failures` times, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("connection refused")
        return "stored"


async def test_a_write_is_retried_with_backoff_until_the_database_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    write = Flaky(failures=3)
    with caplog.at_level(logging.DEBUG, logger="chat.dbretry"):
        result = await retry_write(write, what="x", budget=30, first_delay=0.01, max_delay=0.04)
    assert result == (True, "stored")
    assert write.calls == 4
    # One line when it got through; the failed tries are debug noise only.
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [(r.levelname, r.getMessage().split(" after")[0]) for r in loud] == [
        ("WARNING", "Stored x")
    ]


async def test_retrying_is_bounded_and_giving_up_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    write = Flaky(failures=10**6)
    with caplog.at_level(logging.INFO, logger="chat.dbretry"):
        result = await retry_write(write, what="x", budget=0.3, first_delay=0.01, max_delay=0.05)
    assert result == (False, None)
    assert write.calls >= 3
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "Gave up storing x" in caplog.records[0].getMessage()


async def test_an_error_that_is_not_the_database_is_not_retried() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await retry_write(broken, what="x", budget=30, first_delay=0.01)
    assert calls == 1


# --- the runner, with the in-memory log and a database that goes away ------------------------


class OneSource:
    async def retrieve(self, query: str, *, collection: str, k: int) -> list[Source]:
        return [Source(id="s1", title="T", source="t.md", snippet="s", score=1.0, text="s")]


def make_runner(log: MemoryRoomLog, llm: FakeLLM) -> tuple[AnswerRunner, Admission]:
    coordinator = MemoryCoordinator()
    runner = AnswerRunner(
        log=log,
        coordinator=coordinator,
        assistant_for=lambda collection: Assistant(llm=llm, retriever=OneSource(), collection="c"),
    )
    return runner, Admission(runner=runner, coordinator=coordinator, log=log)


def make_log() -> MemoryRoomLog:
    async def seeder(room: str) -> RoomSeed:
        return RoomSeed(last_seq=0)

    return MemoryRoomLog(
        seeder=seeder, retention_events=1000, retention_seconds=3600, view_size=100
    )


@pytest.fixture
def stored() -> Reader:
    """Reads an answer's row straight from the test database's file, beside Django (whose
    connections may be away)."""
    path = connection.settings_dict["NAME"]

    def read(answer_id: str) -> tuple[str, str, int | None]:
        reader = sqlite3.connect(path)
        try:
            row = reader.execute(
                "select status, text, end_seq from chat_message where id = ?", (answer_id,)
            ).fetchone()
        finally:
            reader.close()
        assert row is not None
        return row[0], row[1], row[2]

    return read


@asynccontextmanager
async def database_away(tmp_path: Any) -> AsyncIterator[None]:
    """Every new connection fails until the block ends; the answer tasks' open connection
    (in their own database thread, see chat.background) is closed first."""
    settings = connection.settings_dict
    real = settings["NAME"]
    settings["NAME"] = str(tmp_path / "no such directory" / "db.sqlite3")
    try:
        await detached(database_sync_to_async(connections.close_all)())
        yield
    finally:
        settings["NAME"] = real


async def test_the_end_reaches_the_room_at_once_and_the_database_when_it_is_back(
    settings: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture, stored: Reader
) -> None:
    settings.CHAT_DB_RETRY_SECONDS = 60
    log = make_log()
    runner, admission = make_runner(log, FakeLLM(DELTAS, delay=0.2))
    frames: list[dict[str, Any]] = []
    await log.subscribe("away", lambda seq, frame: frames.append(json.loads(frame)))
    try:
        await admission.ask("away", ASKER, protocol.Ask(text="Still there?"))
        start = await wait_for(lambda: [f for f in frames if f["type"] == "answer.delta"])
        answer_id = start[0]["answer_id"]
        async with database_away(tmp_path):
            end = (await wait_for(lambda: [f for f in frames if f["type"] == "answer.end"]))[0]
            assert (end["status"], end["text"]) == ("complete", "".join(DELTAS))
            await asyncio.sleep(1.0)  # a few retries fail meanwhile
            assert stored(answer_id)[0] == "streaming"
            assert answer_id in runner.ends.storing
        await wait_for(lambda: stored(answer_id)[0] != "streaming", timeout=30)
        assert stored(answer_id) == ("complete", end["text"], end["seq"])
        await wait_for(lambda: answer_id not in runner.ends.storing)
    finally:
        await runner.shutdown()
    messages = [r.getMessage() for r in caplog.records if answer_id in r.getMessage()]
    assert len([m for m in messages if m.startswith("Could not store the end")]) == 1
    assert len([m for m in messages if m.startswith("Stored the end")]) == 1
    assert [f["type"] for f in frames].count("answer.end") == 1


async def post(log: MemoryRoomLog, room: str, answer_id: str, *, text: str | None) -> None:
    """A question and its answer as the room saw them: stored when asked and started (the
    row stays `streaming`), and in the log, ended with `text` unless None (still live)."""
    question_id = f"q-{answer_id}"
    await database_sync_to_async(storage.create_questions_in_context)(
        [ask_to_store(room, question_id, ASKER, "?", answer_id=answer_id)]
    )
    user = ASKER.to_wire()
    await log.append(
        room,
        protocol.question_event(id=question_id, user=user, text="?", created="t", client_id=None),
    )
    await log.append(
        room, protocol.answer_start_event(id=answer_id, question_id=question_id, created="t")
    )
    await log.append(room, protocol.answer_delta_event(answer_id=answer_id, text="partial"))
    if text is not None:
        await log.append(
            room, protocol.answer_end_event(answer_id=answer_id, status="complete", text=text)
        )


async def test_rows_left_streaming_are_repaired_from_the_end_the_log_holds(
    stored: Reader,
) -> None:
    log = make_log()
    runner, _ = make_runner(log, FakeLLM())
    await post(log, "fix", "a-ended", text="what everyone saw")
    await post(log, "fix", "a-live", text=None)  # still being written: the reaper's business
    await post(log, "fix", "a-other", text="seen too")
    assert await runner.repair_ended(["fix"]) == 2
    assert stored("a-ended")[:2] == ("complete", "what everyone saw")
    assert stored("a-other")[:2] == ("complete", "seen too")
    assert stored("a-live")[0] == "streaming"
    assert await runner.repair_ended(["fix"]) == 0  # nothing left to repair

    # A cancel of an answer the log has ended (its worker gone) stores the log's end too.
    await post(log, "fix", "a-late", text="ended before the cancel")
    assert await runner.ends.interrupt_orphan("fix", "a-late", status="cancelled") is False
    assert stored("a-late")[:2] == ("complete", "ended before the cancel")
