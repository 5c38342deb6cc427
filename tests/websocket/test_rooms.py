"""Rooms through the real ASGI application, answers from the real `openai` client talking to
the project's simulator over real HTTP, sources from real Chroma."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from llmsim import simulated_text
from tests.conftest import connect, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("knowledge_base")]


def deltas(frames: list[dict[str, Any]], answer_id: str | None = None) -> str:
    return "".join(
        f["text"]
        for f in frames
        if f["type"] == "answer.delta" and (answer_id is None or f["answer_id"] == answer_id)
    )


def assert_consecutive(frames: list[dict[str, Any]]) -> None:
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


@database_sync_to_async
def stored(message_id: str) -> Message:
    return Message.objects.get(id=message_id)


async def test_every_member_sees_the_same_grounded_answer(llm: Any) -> None:
    alice = await connect("cafe")
    bob = await connect("cafe")
    assert bob.welcome["seq"] == alice.welcome["seq"]
    await alice.send({"type": "ask", "text": "아이스 아메리카노 가격이 얼마예요?"})
    a = await alice.recv_until(lambda f: f["type"] == "answer.end")
    b = await bob.recv_until(lambda f: f["type"] == "answer.end")
    assert a == b
    assert [f["type"] for f in a[:3]] == ["question", "answer.start", "answer.sources"]
    assert a[0]["user"] == alice.welcome["user"]
    assert a[0]["seq"] == alice.welcome["seq"] + 1
    assert_consecutive(a)
    sources = a[2]["sources"]
    assert sources and {"id", "title", "source", "snippet", "score"} <= set(sources[0])
    assert any("drink" in s["source"] for s in sources)
    first_delta = next(i for i, f in enumerate(a) if f["type"] == "answer.delta")
    assert first_delta > 2  # sources before any delta
    end = a[-1]
    assert end["status"] == "complete"
    assert end["text"] == deltas(a) and end["text"]
    assert end["usage"]["completion_tokens"] > 0
    answer = await stored(end["answer_id"])
    assert answer.status == "complete"
    assert answer.text == end["text"]
    assert answer.sources == sources
    assert answer.question_id == a[0]["id"]
    question = await stored(a[0]["id"])
    assert question.text == "아이스 아메리카노 가격이 얼마예요?"
    await alice.close()
    await bob.close()


async def test_prompt_holds_context_and_follow_up_history(llm: Any) -> None:
    alice = await connect("followup")
    first = (await alice.answer("What desserts do you have?"))[-1]
    await alice.answer("And which of them has no nuts?")
    # The answers are streamed; the follow-up's rewrite (below) is the one request that is not.
    requests = [record for record in llm.stats() if record.stream]
    assert len(requests) == 2
    messages = requests[-1].messages
    assert messages[0]["role"] == "system"
    # The earlier question and its answer come before the passages and the new question.
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "user"]
    name = alice.welcome["user"]["name"]
    assert messages[1]["content"] == f"{name}: What desserts do you have?"
    assert messages[2]["content"] == first["text"]
    assert messages[3]["content"].startswith("<documents>\n[1] ")
    assert messages[4]["content"] == f"{name}: And which of them has no nuts?"
    await alice.close()


def sources_of(frames: list[dict[str, Any]]) -> dict[str, Any]:
    return next(f for f in frames if f["type"] == "answer.sources")


async def test_a_follow_up_is_rewritten_by_the_llm_and_the_query_shown_with_its_sources(
    llm: Any,
) -> None:
    alice = await connect("rewrite")
    first = await alice.answer("What desserts do you have?")
    assert "query" not in sources_of(first)  # no conversation yet: searched as asked
    second = await alice.answer("And which of them has no nuts?")
    # What the simulator answered the rewrite prompt is what was searched, and is shown.
    assert sources_of(second)["query"] == simulated_text(12).strip()
    assert second[-1]["status"] == "complete"
    records = llm.stats()
    assert [record.stream for record in records] == [True, False, True]
    rewrite = records[1]
    assert rewrite.finished and rewrite.messages[0]["role"] == "system"
    prompt = rewrite.messages[-1]["content"]
    name = alice.welcome["user"]["name"]
    assert f"{name}: What desserts do you have?" in prompt
    assert f"Assistant: {first[-1]['text'].strip()}" in prompt
    assert prompt.endswith("Last question: And which of them has no nuts?\n\nSearch query:")
    await alice.close()


@pytest.mark.parametrize("fault", ["stall", "500"])
async def test_a_rewrite_that_fails_or_times_out_searches_the_question_as_asked(
    llm: Any, settings: Any, fault: str
) -> None:
    settings.CHAT_REWRITE_TIMEOUT = 0.5
    alice = await connect(f"rewrite-{fault}")
    await alice.answer("What desserts do you have?")
    llm.configure(fault=fault, fail_times=1)  # the next request only: the rewrite
    frames = await alice.answer("And which of them has no nuts?")
    assert "query" not in sources_of(frames)
    assert sources_of(frames)["sources"]
    end = frames[-1]
    assert end["status"] == "complete" and end["text"] == simulated_text(12)
    records = await wait_for(lambda: [r for r in llm.stats() if r.ended is not None])
    rewrite = next(record for record in records if not record.stream)
    assert rewrite.fault == fault
    if fault == "stall":
        assert rewrite.client_disconnected_early  # given up on, the request closed
    else:
        assert rewrite.status == 500
    await alice.close()


async def test_cancel_stops_the_answer_and_closes_the_upstream_request(llm: Any) -> None:
    alice = await connect("cancel")
    await alice.send({"type": "ask", "text": "Tell me everything [[sim tokens=400 tps=40]]"})
    frames = await alice.recv_until(lambda f: f["type"] == "answer.delta")
    answer_id = frames[1]["id"]
    await alice.send({"type": "cancel", "answer_id": answer_id})
    rest = await alice.recv_until(lambda f: f["type"] == "answer.end")
    end = rest[-1]
    assert end["status"] == "cancelled"
    assert end["text"] == deltas(frames + rest)
    assert 0 < len(end["text"].split()) < 400
    records = await wait_for(
        lambda: [r for r in llm.stats() if r.finished or r.client_disconnected_early]
    )
    assert records[-1].client_disconnected_early
    assert not records[-1].finished
    answer = await stored(answer_id)
    assert (answer.status, answer.text) == ("cancelled", end["text"])
    await alice.close()


async def test_closing_the_socket_never_cancels_an_answer(llm: Any) -> None:
    alice = await connect("leave")
    bob = await connect("leave")
    await alice.send({"type": "ask", "text": "hello [[sim tokens=30 tps=100]]"})
    await alice.recv_until(lambda f: f["type"] == "answer.delta")
    await alice.close()
    frames = await bob.recv_until(lambda f: f["type"] == "answer.end")
    assert frames[-1]["status"] == "complete"
    assert len(frames[-1]["text"].split()) == 30
    answer = await stored(frames[-1]["answer_id"])
    assert answer.status == "complete"
    await bob.close()


async def test_joining_mid_answer_gets_the_text_so_far_then_the_rest(llm: Any) -> None:
    alice = await connect("midway")
    await alice.send({"type": "ask", "text": "long one [[sim tokens=80 tps=80]]"})
    seen = await alice.recv_until(lambda f: f["type"] == "answer.delta" and len(deltas([f])) > 0)
    seen += await alice.recv_until(lambda f: f["type"] == "answer.delta")
    carol = await connect("midway")
    streaming = [m for m in carol.welcome["history"] if m["status"] == "streaming"]
    assert len(streaming) == 1
    so_far = streaming[0]["text"]
    later = await carol.recv_until(lambda f: f["type"] == "answer.end")
    assert later[0]["seq"] == carol.welcome["seq"] + 1
    assert_consecutive(later)
    assert so_far + deltas(later) == later[-1]["text"]
    await alice.close()
    await carol.close()


async def test_resume_after_a_seq_gets_exactly_the_missed_events(llm: Any) -> None:
    alice = await connect("resume")
    bob = await connect("resume")
    await alice.send({"type": "ask", "text": "first [[sim tokens=40 tps=200]]"})
    head = await bob.recv_until(lambda f: f["type"] == "answer.delta")
    last_seen = head[-1]["seq"]
    await bob.close()
    everything = await alice.recv_until(lambda f: f["type"] == "answer.end")
    bob2 = await connect("resume", query=f"after={last_seen}")
    assert bob2.welcome["resumed"] is True
    assert bob2.welcome["seq"] == last_seen
    assert bob2.welcome["history"] == []
    missed = await bob2.recv_until(lambda f: f["type"] == "answer.end")
    assert missed == [f for f in everything if f["seq"] > last_seen]
    # A cursor the log cannot vouch for gets a full welcome instead.
    carol = await connect("resume", query="after=999999")
    assert carol.welcome["resumed"] is False
    assert [m["role"] for m in carol.welcome["history"]] == ["user", "assistant"]
    await alice.close()
    await bob2.close()
    await carol.close()


async def test_welcome_history_holds_the_latest_messages_oldest_first(llm: Any) -> None:
    alice = await connect("history")
    ends = []
    for n in range(3):
        frames = await alice.answer(f"question {n} [[sim tokens=5]]")
        ends.append(frames[-1])
    await alice.close()
    bob = await connect("history")
    history = bob.welcome["history"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 3
    assert [m["text"] for m in history[0::2]] == [
        f"question {n} [[sim tokens=5]]" for n in range(3)
    ]
    assert [m["text"] for m in history[1::2]] == [e["text"] for e in ends]
    assert all(m["status"] == "complete" for m in history)
    assert history[1]["question_id"] == history[0]["id"]
    assert history[0]["user"] == alice.welcome["user"]
    assert isinstance(history[1]["sources"], list)
    await bob.close()


async def test_history_survives_a_new_worker_from_the_database(llm: Any) -> None:
    from chat.runtime import reset_runtime

    alice = await connect("restart")
    end = (await alice.answer("remember me [[sim tokens=6]]"))[-1]
    await alice.close()
    await reset_runtime()  # a fresh process: its in-memory log starts from the database
    bob = await connect("restart")
    assert [m["text"] for m in bob.welcome["history"]][-1] == end["text"]
    assert bob.welcome["seq"] > end["seq"]
    await bob.close()


async def test_the_same_client_id_is_not_asked_twice(llm: Any) -> None:
    alice = await connect("dedupe")
    first = await alice.answer("once [[sim tokens=3]]", client_id="c-1")
    await alice.send({"type": "ask", "text": "once [[sim tokens=3]]", "client_id": "c-1"})
    await alice.send({"type": "ping"})
    # Nothing between the repeat and the pong: no question, no answer.
    assert [f["type"] for f in await alice.recv_until(lambda f: f["type"] == "pong")] == ["pong"]
    assert first[0]["client_id"] == "c-1"
    count = await database_sync_to_async(
        Message.objects.filter(room__name="dedupe", role="user").count
    )()
    assert count == 1
    await alice.close()


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("500", "llm_server_error"),
        ("400", "llm_rejected"),
        ("drop", "llm_truncated"),
        ("truncate", "llm_truncated"),
        ("malformed", "llm_bad_response"),
    ],
)
async def test_an_upstream_failure_ends_the_answer_failed(
    llm: Any, settings: Any, fault: str, code: str
) -> None:
    settings.CHAT_LLM_MAX_RETRIES = 0
    alice = await connect(f"fail-{fault}")
    frames = await alice.answer(f"break [[sim fault={fault} tokens=20 fault_after=5]]")
    end = frames[-1]
    assert end["status"] == "failed"
    assert end["error"]["code"] == code
    assert end["error"]["message"]
    assert end["text"] == deltas(frames)
    answer = await stored(end["answer_id"])
    assert (answer.status, answer.text, answer.error["code"]) == ("failed", end["text"], code)
    # The connection lives on and the room keeps answering.
    ok = await alice.answer("again [[sim tokens=3]]")
    assert ok[-1]["status"] == "complete"
    await alice.close()


async def test_a_stalled_stream_fails_with_a_timeout(llm: Any, settings: Any) -> None:
    settings.CHAT_LLM_READ_TIMEOUT = 0.5
    alice = await connect("stall")
    frames = await alice.answer("wait [[sim fault=stall tokens=10 fault_after=3]]")
    assert frames[-1]["status"] == "failed"
    assert frames[-1]["error"]["code"] == "llm_timeout"
    assert frames[-1]["text"] == deltas(frames)
    await alice.close()


async def test_presence_shows_who_is_in_the_room() -> None:
    alice = await connect("people")
    assert alice.welcome["members"] == [alice.welcome["user"]]
    bob = await connect("people")
    assert {m["id"] for m in bob.welcome["members"]} == {
        alice.welcome["user"]["id"],
        bob.welcome["user"]["id"],
    }
    # Presence frames may repeat a list; each one is the whole list at that moment.
    await alice.recv_until(
        lambda f: f["type"] == "presence" and len(f["members"]) == 2, skip_presence=False
    )
    await bob.close()
    await alice.recv_until(
        lambda f: f["type"] == "presence" and f["members"] == [alice.welcome["user"]],
        skip_presence=False,
    )
    await alice.close()


async def test_too_many_running_answers_is_busy(llm: Any, settings: Any) -> None:
    settings.CHAT_MAX_ANSWERS_PER_USER = 1
    alice = await connect("busy")
    await alice.send({"type": "ask", "text": "slow [[sim tokens=50 tps=50]]"})
    await alice.send({"type": "ask", "text": "second"})
    frames = await alice.recv_until(lambda f: f["type"] == "error")
    assert frames[-1]["code"] == "busy"
    end = await alice.recv_until(lambda f: f["type"] == "answer.end")
    assert end[-1]["status"] == "complete"
    await alice.close()
