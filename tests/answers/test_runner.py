"""The answer runner, with the in-memory room log, the in-memory coordinator and a fake LLM,
its answers started through admission as the application starts them: what an answer appends
and stores, cancel, failure, shutdown, its slot, and the conversation the LLM is given."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import protocol
from chat.answers import runner as runner_module
from chat.answers.admission import Admission
from chat.answers.assistant import Assistant
from chat.answers.events import AnswerEvent
from chat.answers.runner import AnswerRunner
from chat.errors import LLMError
from chat.identity import Identity
from chat.llm.base import ChatMessage, Usage
from chat.llm.fake import FakeLLM
from chat.models import Message
from chat.protocol import ProtocolError
from chat.realtime.coordination import MemoryCoordinator
from chat.realtime.log import RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.retrieval.base import Source
from tests.conftest import wait_for

# The runner stores rows through database_sync_to_async, in threads of their own.
pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "kitchen"
ASKER = Identity(id="g:ann", name="Ann", is_guest=True)
OTHER = Identity(id="g:bob", name="Bob", is_guest=True)
STAFF = Identity(id="u:7", name="Sam", is_staff=True)
SOURCE = Source(id="s1", title="Menu", source="menu.md", snippet="Latte", score=0.9, text="Latte")


def slow_llm(count: int = 60, **options: Any) -> FakeLLM:
    """An answer that takes a while (`count` deltas, 20 ms apart): time to act while it runs."""
    return FakeLLM([f"w{n} " for n in range(count)], delay=0.02, **options)


class OneSource:
    async def retrieve(self, query: str, *, collection: str, k: int) -> list[Source]:
        return [SOURCE]


class RecordingAssistant(Assistant):
    """The real assistant, noting the conversation the runner gives it with each question."""

    def __init__(
        self, llm: FakeLLM, asked: list[tuple[str, list[ChatMessage]]], retriever: Any = None
    ) -> None:
        super().__init__(llm=llm, retriever=retriever or OneSource(), collection="c")
        self._asked = asked

    def astream_events(
        self,
        question: str,
        *,
        history: Sequence[ChatMessage] = (),
        asker: str = "",
        partial: str = "",
    ) -> AsyncGenerator[AnswerEvent, None]:
        self._asked.append((question, list(history)))
        return super().astream_events(question, history=history, asker=asker, partial=partial)


def conversation_in(messages: Sequence[ChatMessage], history: list[ChatMessage]) -> bool:
    """Whether `history` is in the prompt as it is: consecutive and in order."""
    width = len(history)
    return any(list(messages[i : i + width]) == history for i in range(len(messages)))


class Worker:
    """One worker's answer pipeline for a room, with everything the room log receives."""

    def __init__(self, llm: FakeLLM) -> None:
        self.llm = llm  # the LLM of the next answers (a test may swap it)
        self.retriever: Any = OneSource()  # and its retriever

        async def seeder(room: str) -> RoomSeed:
            return RoomSeed(last_seq=0)

        self.log = MemoryRoomLog(
            seeder=seeder, retention_events=10_000, retention_seconds=3600, view_size=100
        )
        self.coordinator = MemoryCoordinator()
        # Each question and the conversation the runner gave the assistant with it.
        self.asked: list[tuple[str, list[ChatMessage]]] = []
        self.runner = AnswerRunner(
            log=self.log,
            coordinator=self.coordinator,
            assistant_for=lambda collection: RecordingAssistant(
                self.llm, self.asked, self.retriever
            ),
        )
        self.admission = Admission(runner=self.runner, coordinator=self.coordinator, log=self.log)
        self.frames: list[dict[str, Any]] = []

    async def open(self) -> None:
        await self.log.subscribe(ROOM, lambda seq, frame: self.frames.append(json.loads(frame)))

    async def ask(self, text: str = "What is on the menu?", who: Identity = ASKER) -> str:
        admitted = await self.admission.ask(ROOM, who, protocol.Ask(text=text))
        assert admitted.answer_id is not None
        return admitted.answer_id

    def events(self, answer_id: str) -> list[dict[str, Any]]:
        """This answer's frames as the room got them, in order."""
        return [f for f in self.frames if answer_id in (f.get("answer_id"), f.get("id"))]

    def ends(self, answer_id: str) -> list[dict[str, Any]]:
        return [f for f in self.events(answer_id) if f["type"] == "answer.end"]

    def text_seen(self, answer_id: str) -> str:
        return "".join(f["text"] for f in self.events(answer_id) if f["type"] == "answer.delta")

    def delta_count(self, answer_id: str) -> int:
        return [f["type"] for f in self.events(answer_id)].count("answer.delta")

    async def deltas(self, answer_id: str, count: int) -> None:
        """Wait until the room has seen `count` deltas of the answer."""
        await wait_for(lambda: self.delta_count(answer_id) >= count)

    async def end(self, answer_id: str) -> dict[str, Any]:
        """The answer's end, once the runner has let go of the answer."""
        await wait_for(lambda: self.ends(answer_id))
        await wait_for(lambda: answer_id not in self.runner.running_ids())
        return self.ends(answer_id)[0]


NewWorker = Callable[[FakeLLM], Awaitable[Worker]]


@pytest.fixture
async def new_worker() -> AsyncIterator[NewWorker]:
    """Makes workers; their running answers are shut down when the test ends."""
    made: list[Worker] = []

    async def make(llm: FakeLLM) -> Worker:
        worker = Worker(llm)
        await worker.open()
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.runner.shutdown()


FIELDS = ("status", "text", "usage", "error", "sources", "seq", "end_seq")


async def row(answer_id: str) -> dict[str, Any]:
    """The answer's stored row."""

    def read() -> dict[str, Any]:
        return Message.objects.filter(id=answer_id).values(*FIELDS).get()

    return await database_sync_to_async(read)()


# --- a complete answer ----------------------------------------------------------------------


async def test_a_complete_answer_appends_start_sources_deltas_and_one_end_and_stores_it(
    new_worker: NewWorker,
) -> None:
    llm = FakeLLM(["A latte", ", ", "a mocha", "."], delay=0.01, usage=Usage(12, 4))
    worker = await new_worker(llm)
    answer_id = await worker.ask("What is on the menu?")
    end = await worker.end(answer_id)

    events = worker.events(answer_id)
    kinds = [f["type"] for f in events]
    assert kinds[:2] == ["answer.start", "answer.sources"]
    assert set(kinds[2:-1]) == {"answer.delta"}
    assert kinds[-1] == "answer.end"
    question = worker.frames[0]
    assert (question["type"], question["text"]) == ("question", "What is on the menu?")
    assert events[0]["question_id"] == question["id"]
    assert events[1]["sources"] == [SOURCE.to_wire()]
    # Nothing else happened in the room: the answer's events are consecutive, after the question.
    assert [f["seq"] for f in worker.frames] == list(range(1, len(events) + 2))

    assert worker.text_seen(answer_id) == "A latte, a mocha."
    assert end == {
        "seq": events[-1]["seq"],
        "type": "answer.end",
        "answer_id": answer_id,
        "status": "complete",
        "text": "A latte, a mocha.",
        "usage": {"prompt_tokens": 12, "completion_tokens": 4},
    }
    assert await row(answer_id) == {
        "status": "complete",
        "text": "A latte, a mocha.",
        "usage": {"prompt_tokens": 12, "completion_tokens": 4},
        "error": None,
        "sources": [SOURCE.to_wire()],
        "seq": events[0]["seq"],
        "end_seq": end["seq"],
    }
    assert (llm.completed, llm.closed_early) == (1, False)
    assert await worker.coordinator.owner_channel(answer_id) is None
    assert worker.runner.running_ids() == []


# --- the start runs while the answer searches ------------------------------------------------


class GatedStart:
    """Holds the append of `answer.start` until `release` is set (or 5 s), noting whether the
    retriever was called meanwhile; `release_on_search`: the retriever sets `release`."""

    def __init__(self, worker: Worker, *, release_on_search: bool = True) -> None:
        self.release = asyncio.Event()
        self.searched = asyncio.Event()
        self.searched_before_start: list[bool] = []
        append = worker.log.append

        async def gated(room: str, event: dict[str, Any], **options: Any) -> int | None:
            if event["type"] == "answer.start":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 5)
                self.searched_before_start.append(self.searched.is_set())
            return await append(room, event, **options)

        worker.log.append = gated  # type: ignore[method-assign]
        gate = self

        class Searching(OneSource):
            async def retrieve(self, query: str, *, collection: str, k: int) -> list[Source]:
                gate.searched.set()
                if release_on_search:
                    gate.release.set()
                return [SOURCE]

        worker.retriever = Searching()


async def test_retrieval_runs_while_the_start_is_stored_and_the_room_sees_start_first(
    new_worker: NewWorker,
) -> None:
    """The answer searches while its row is stored and its `answer.start` appended (the search
    releases the held start); the room still sees start, sources, deltas, one end."""
    worker = await new_worker(FakeLLM(["A latte", "."]))
    gate = GatedStart(worker)
    answer_id = await worker.ask()
    end = await worker.end(answer_id)
    assert gate.searched_before_start == [True]
    kinds = [f["type"] for f in worker.events(answer_id)]
    assert kinds[:2] == ["answer.start", "answer.sources"] and kinds[-1] == "answer.end"
    assert set(kinds[2:-1]) == {"answer.delta"}
    assert end["status"] == "complete" and end["text"] == "A latte."
    assert (await row(answer_id))["status"] == "complete"


async def test_a_cancel_while_the_start_is_appended_ends_the_answer_once_after_its_start(
    new_worker: NewWorker,
) -> None:
    """Cancelled while its start is held: the start is not cut, and the answer ends once,
    cancelled, after it, with nothing else."""
    worker = await new_worker(slow_llm())
    gate = GatedStart(worker, release_on_search=False)
    answer_id = await worker.ask()
    await gate.searched.wait()
    assert worker.runner.cancel_local(answer_id) is True
    await asyncio.sleep(0.05)
    assert worker.events(answer_id) == []  # the start is still held
    gate.release.set()
    end = await worker.end(answer_id)
    assert [f["type"] for f in worker.events(answer_id)] == ["answer.start", "answer.end"]
    assert (end["status"], end["text"]) == ("cancelled", "")
    assert (await row(answer_id))["status"] == "cancelled"


async def test_answers_being_written_are_checkpointed_together_while_they_stream(
    new_worker: NewWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every checkpoint interval the rows of the answers running here get their text so far
    (what a crash of the worker would leave), and the end then stores the whole text."""
    monkeypatch.setattr(runner_module, "CHECKPOINT_SECONDS", 0.1)
    worker = await new_worker(slow_llm(count=40))
    first, second = await worker.ask(), await worker.ask("And to drink?", who=OTHER)

    async def checkpointed(answer_id: str) -> bool:
        try:
            stored = await row(answer_id)
        except Message.DoesNotExist:
            return False  # its start is stored while it searches: not yet
        return stored["status"] == "streaming" and len(stored["text"]) > 0

    await wait_for(lambda: checkpointed(first))
    await wait_for(lambda: checkpointed(second))
    for answer_id in (first, second):
        stored = await row(answer_id)
        assert worker.llm.text.startswith(stored["text"])  # a prefix of what was written
    for answer_id in (first, second):
        end = await worker.end(answer_id)
        assert (await row(answer_id))["text"] == end["text"] == worker.llm.text


# --- cancel ---------------------------------------------------------------------------------


async def assert_cancelled(worker: Worker, answer_id: str) -> None:
    """Ended once, `cancelled`, with the text the room saw; stored so; the LLM stream closed."""
    end = await worker.end(answer_id)
    text = worker.text_seen(answer_id)
    assert text and text != worker.llm.text  # stopped part way
    assert (end["status"], end["text"]) == ("cancelled", text)
    assert "error" not in end
    assert worker.events(answer_id)[-1] == end  # nothing of it after its end
    assert len(worker.ends(answer_id)) == 1
    stored = await row(answer_id)
    assert (stored["status"], stored["text"], stored["end_seq"]) == ("cancelled", text, end["seq"])
    await wait_for(worker.llm.closed.is_set)
    assert worker.llm.closed_early
    assert worker.llm.completed == 0


async def test_cancel_local_ends_the_answer_cancelled_once_and_closes_the_llm_stream(
    new_worker: NewWorker,
) -> None:
    worker = await new_worker(slow_llm())
    answer_id = await worker.ask()
    await worker.deltas(answer_id, 3)
    assert worker.runner.cancel_local(answer_id) is True
    await assert_cancelled(worker, answer_id)
    assert worker.runner.cancel_local(answer_id) is False  # no longer running here
    assert worker.runner.cancel_local("a_unknown") is False


async def test_cancels_repeated_while_the_answer_ends_still_end_it_once(
    new_worker: NewWorker,
) -> None:
    """A double click on Stop: a second cancel landing while the first one ends the answer
    once cut that end short (stored, never appended)."""
    worker = await new_worker(slow_llm())
    answer_id = await worker.ask()
    await worker.deltas(answer_id, 3)
    while answer_id in worker.runner.running_ids():
        assert worker.runner.cancel_local(answer_id) is True
        await asyncio.sleep(0)
    await assert_cancelled(worker, answer_id)


@pytest.mark.parametrize("who", [ASKER, STAFF], ids=["asker", "staff"])
async def test_the_asker_or_staff_can_cancel_an_answer(
    new_worker: NewWorker, who: Identity
) -> None:
    worker = await new_worker(slow_llm())
    answer_id = await worker.ask()
    await worker.deltas(answer_id, 3)
    await worker.runner.cancel(ROOM, who, answer_id)
    await assert_cancelled(worker, answer_id)
    # A cancel of an answer that has ended changes nothing.
    await worker.runner.cancel(ROOM, who, answer_id)
    assert len(worker.ends(answer_id)) == 1
    assert (await row(answer_id))["status"] == "cancelled"


@pytest.mark.parametrize(
    ("who", "room", "which", "code"),
    [
        (OTHER, ROOM, "this", "forbidden"),
        (ASKER, "elsewhere", "this", "not_found"),
        (ASKER, ROOM, "a_no_such_answer", "not_found"),
    ],
    ids=["someone-else", "another-room", "no-such-answer"],
)
async def test_a_refused_cancel_leaves_the_answer_running_to_its_end(
    new_worker: NewWorker, who: Identity, room: str, which: str, code: str
) -> None:
    worker = await new_worker(slow_llm(count=10))
    answer_id = await worker.ask()
    await worker.deltas(answer_id, 2)
    with pytest.raises(ProtocolError) as refused:
        await worker.runner.cancel(room, who, answer_id if which == "this" else which)
    assert refused.value.code == code
    end = await worker.end(answer_id)
    assert (end["status"], end["text"]) == ("complete", worker.llm.text)
    assert worker.llm.closed_early is False


# --- failure and shutdown -------------------------------------------------------------------


async def test_an_llm_error_ends_the_answer_failed_with_its_code_and_the_text_so_far(
    new_worker: NewWorker,
) -> None:
    error = LLMError("The model is overloaded.", code="llm_server_error")
    worker = await new_worker(FakeLLM(["One ", "two ", "three."], error=error, error_after=2))
    answer_id = await worker.ask()
    end = await worker.end(answer_id)
    failure = {"code": "llm_server_error", "message": "The model is overloaded."}
    assert (end["status"], end["text"], end["error"]) == ("failed", "One two ", failure)
    assert worker.text_seen(answer_id) == "One two "
    assert len(worker.ends(answer_id)) == 1
    stored = await row(answer_id)
    assert (stored["status"], stored["text"], stored["error"]) == ("failed", "One two ", failure)


async def test_an_unexpected_error_ends_the_answer_failed_as_internal(
    new_worker: NewWorker, caplog: pytest.LogCaptureFixture
) -> None:
    worker = await new_worker(FakeLLM(["Half "], error=RuntimeError("a bug"), error_after=1))
    answer_id = await worker.ask()
    end = await worker.end(answer_id)
    failure = {"code": "internal", "message": "The answer failed: RuntimeError."}
    assert (end["status"], end["text"], end["error"]) == ("failed", "Half ", failure)
    assert (await row(answer_id))["status"] == "failed"
    assert any("failed unexpectedly" in r.getMessage() for r in caplog.records)


async def test_shutdown_ends_every_running_answer_interrupted_with_the_text_so_far(
    new_worker: NewWorker,
) -> None:
    worker = await new_worker(slow_llm())
    first = await worker.ask("First?")
    second = await worker.ask("Second?", who=OTHER)
    await worker.deltas(first, 2)
    await worker.deltas(second, 2)
    await worker.runner.shutdown()
    assert worker.runner.running_ids() == []
    interrupted = {"code": "interrupted", "message": "The server stopped this answer."}
    for answer_id in (first, second):
        [end] = worker.ends(answer_id)
        text = worker.text_seen(answer_id)
        assert (end["status"], end["text"], end["error"]) == ("interrupted", text, interrupted)
        assert text and text != worker.llm.text
        stored = await row(answer_id)
        assert (stored["status"], stored["text"]) == ("interrupted", text)
    assert worker.llm.closed_early
    assert worker.llm.completed == 0


# --- the answer slot ------------------------------------------------------------------------


async def end_it(worker: Worker, answer_id: str, how: str) -> None:
    if how == "cancelled":
        worker.runner.cancel_local(answer_id)
    end = await worker.end(answer_id)
    assert end["status"] == how


@pytest.mark.parametrize("how", ["complete", "cancelled", "failed"])
async def test_the_askers_slot_is_busy_while_the_answer_runs_and_free_once_it_ends(
    new_worker: NewWorker, settings: Any, how: str
) -> None:
    settings.CHAT_MAX_ANSWERS_PER_USER = 1
    error = LLMError("Gone.", code="llm_unavailable") if how == "failed" else None
    worker = await new_worker(slow_llm(count=15, error=error, error_after=10))
    answer_id = await worker.ask()
    await worker.deltas(answer_id, 1)
    questions = len([f for f in worker.frames if f["type"] == "question"])
    with pytest.raises(ProtocolError) as refused:
        await worker.ask("And another?")
    assert refused.value.code == "busy"
    assert len([f for f in worker.frames if f["type"] == "question"]) == questions
    await worker.ask("Meanwhile?", who=OTHER)  # the limit is per person

    await end_it(worker, answer_id, how)
    again = await worker.ask("And another?")
    await worker.deltas(again, 1)
    assert again in worker.runner.running_ids()


# --- the conversation -----------------------------------------------------------------------


async def test_the_llm_is_given_the_earlier_questions_and_complete_answers(
    new_worker: NewWorker,
) -> None:
    worker = await new_worker(FakeLLM(["Lattes ", "and mochas."]))
    first = await worker.ask("What is on the menu?")
    await worker.end(first)

    worker.llm = slow_llm()
    second = await worker.ask("And to eat?")
    await worker.deltas(second, 2)
    await worker.runner.cancel(ROOM, ASKER, second)
    await worker.end(second)

    worker.llm = FakeLLM(["Until six."])
    third = await worker.ask("When do you close?", who=OTHER)
    await worker.end(third)

    # The cancelled answer's text is left out; its question stays. People's lines say who.
    conversation = [
        ChatMessage(role="user", content="Ann: What is on the menu?"),
        ChatMessage(role="assistant", content="Lattes and mochas."),
        ChatMessage(role="user", content="Ann: And to eat?"),
    ]
    assert [question for question, _ in worker.asked] == [
        "What is on the menu?",
        "And to eat?",
        "When do you close?",
    ]
    assert [history for _, history in worker.asked] == [[], conversation[:2], conversation]
    [request] = worker.llm.requests
    assert request.messages[-1] == ChatMessage(role="user", content="Bob: When do you close?")
    assert conversation_in(request.messages, conversation)


async def test_the_conversation_is_the_last_chat_context_messages_before_the_question(
    new_worker: NewWorker, settings: Any
) -> None:
    settings.CHAT_CONTEXT_MESSAGES = 3
    worker = await new_worker(FakeLLM(["Yes."]))
    for n in range(4):
        await worker.end(await worker.ask(f"Question {n}?"))
    _, history = worker.asked[-1]
    assert [(m.role, m.content) for m in history] == [
        ("assistant", "Yes."),
        ("user", "Ann: Question 2?"),
        ("assistant", "Yes."),
    ]
    assert conversation_in(worker.llm.requests[-1].messages, history)
