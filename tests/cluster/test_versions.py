"""Answers people can steer (the versions part of issue 12), across two real workers on Redis and
PostgreSQL with the real `openai` client and the simulator: a regenerated answer is a new
version streamed to everyone, earlier ones kept; one version is written per question at a time,
whichever worker is asked; a failed answer is continued (the simulator receives the text already
written), and an answer whose worker was killed is continued on the other; an edited question
is a new question linked to the one it edits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from tests.cluster.clients import Frame, Member, assert_consecutive, deltas, stored_message
from tests.cluster.conftest import ClusterFactory
from tests.cluster.people import team

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def versions_of(database_url: str, question_id: str) -> list[tuple[int, str, str | None]]:
    """(version, status, continues) of a question's answers, by version."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select version, status, continues_id from chat_message"
            " where question_id = %s order by version",
            (question_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


async def _error(member: Member, code: str | None = None) -> Frame:
    frames = await member.until(lambda f: f["type"] == "error" and code in (None, f["code"]))
    return frames[-1]


async def _answered(member: Member, text: str) -> tuple[Frame, Frame]:
    """Ask `text` and wait for its answer's start and end."""
    await member.ask(text)
    start = (await member.until(lambda f: f["type"] == "answer.start"))[-1]
    return start, await member.until_end(start["id"])


async def test_a_regenerated_answer_is_a_new_version_for_everyone_and_the_first_is_kept(
    make_cluster: ClusterFactory, database_url: str
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    owner = await Member.join(cluster.ws_url(0, room), cookie=people["owner"]["cookie"])
    member = await Member.join(cluster.ws_url(1, room), cookie=people["member"]["cookie"])
    first, first_end = await _answered(owner, "What desserts are there? [[sim tokens=8]]")
    assert first["version"] == 1 and "continues" not in first
    assert first_end["status"] == "complete"

    # Someone else's answer: a member may not; the asker may (from either worker).
    await member.send({"type": "regenerate", "answer_id": first["id"]})
    assert (await _error(member))["code"] == "forbidden"
    await owner.send({"type": "regenerate", "answer_id": first["id"]})
    second = (await member.until(lambda f: f["type"] == "answer.start"))[-1]
    assert (second["question_id"], second["version"]) == (first["question_id"], 2)
    assert second["id"] != first["id"]
    ends = await asyncio.gather(owner.until_end(second["id"]), member.until_end(second["id"]))
    for watcher, end in zip((owner, member), ends, strict=True):
        assert end["status"] == "complete"
        assert deltas(watcher.events, second["id"]) == end["text"]
        assert_consecutive(watcher.events, watcher.welcome["seq"] + 1)
    assert versions_of(database_url, first["question_id"]) == [
        (1, "complete", None),
        (2, "complete", None),
    ]
    assert stored_message(database_url, first["id"])["text"] == first_end["text"]

    # A newcomer's history holds both versions, numbered.
    fresh = await Member.join(cluster.ws_url(1, room), cookie=people["mod"]["cookie"])
    answers = [h for h in fresh.welcome["history"] if h["role"] == "assistant"]
    assert [(a["id"], a["version"]) for a in answers] == [(first["id"], 1), (second["id"], 2)]
    # A moderator may regenerate anyone's answer.
    await fresh.send({"type": "regenerate", "answer_id": second["id"]})
    third = (await owner.until(lambda f: f["type"] == "answer.start"))[-1]
    assert third["version"] == 3
    assert (await owner.until_end(third["id"]))["status"] == "complete"

    # Bad input: unknown answers, a complete answer to continue, malformed ids.
    await owner.send({"type": "regenerate", "answer_id": "a_nope"})
    assert (await _error(owner))["code"] == "not_found"
    await owner.send({"type": "continue", "answer_id": first["id"]})
    assert (await _error(owner))["code"] == "conflict"
    await owner.send({"type": "regenerate", "answer_id": 7})
    assert (await _error(owner))["code"] == "invalid"
    await owner.send({"type": "regenerate", "answer_id": first["question_id"]})
    assert (await _error(owner))["code"] == "not_found"  # a question is not an answer
    await owner.send({"type": "ping"})
    await owner.until(lambda f: f["type"] == "pong")  # the socket lives on
    assert len(versions_of(database_url, first["question_id"])) == 3  # nothing else stored


async def test_one_version_is_written_at_a_time_whichever_worker_is_asked(
    make_cluster: ClusterFactory, database_url: str
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    cookie = people["owner"]["cookie"]
    on_a = await Member.join(cluster.ws_url(0, room), cookie=cookie)
    on_b = await Member.join(cluster.ws_url(1, room), cookie=cookie)
    await on_a.ask("Tell me everything [[sim tokens=400 tps=20]]")
    first = (await on_b.until(lambda f: f["type"] == "answer.start"))[-1]
    await on_b.until(lambda f: f["type"] == "answer.delta")

    # Still being written: no second version.
    await on_b.send({"type": "regenerate", "answer_id": first["id"]})
    assert (await _error(on_b))["code"] == "busy"
    await on_b.send({"type": "cancel", "answer_id": first["id"]})
    assert (await on_a.until_end(first["id"]))["status"] == "cancelled"

    # Asked twice at once, on two workers: one new version starts, the other is refused.
    before = len(on_a.others), len(on_b.others)
    await asyncio.gather(
        on_a.send({"type": "regenerate", "answer_id": first["id"]}),
        on_b.send({"type": "regenerate", "answer_id": first["id"]}),
    )
    second = (await on_a.until(lambda f: f["type"] == "answer.start" and f["version"] > 1))[-1]
    await on_a.until(lambda f: f.get("answer_id") == second["id"])  # it is being written
    # Cancel works on the new version from the worker that does not run it.
    other = on_b if cluster.owner_of(second["id"]) == 0 else on_a
    await other.send({"type": "cancel", "answer_id": second["id"]})
    assert (await on_a.until_end(second["id"]))["status"] == "cancelled"
    await on_b.until_end(second["id"])
    refused = [
        f for f in [*on_a.others[before[0] :], *on_b.others[before[1] :]] if f["type"] == "error"
    ]
    assert [f["code"] for f in refused] == ["busy"]
    starts = [f for f in on_b.events if f["type"] == "answer.start"]
    assert [s["version"] for s in starts] == [1, 2]
    assert versions_of(database_url, first["question_id"]) == [
        (1, "cancelled", None),
        (2, "cancelled", None),
    ]


def _continuation_request(sim: Any, partial: str, *, since: float) -> list[dict[str, Any]]:
    """The request that continued the answer: it carries the partial text as the assistant's.
    One of them went out whole; an attempt before it that failed on its way and was retried
    (CHAT_LLM_MAX_RETRIES) carries the same messages. Only requests made from `since` on
    count: the simulator is the session's and writes the same text for every answer, so
    another test's continuation can carry the very same partial (one cut after 10 tokens by
    a fault, this one by a kill after 10: two full runs on a loaded machine saw both)."""
    found = [
        r
        for r in sim.stats()
        if r.started >= since
        and len(r.messages) >= 2
        and r.messages[-2] == {"role": "assistant", "content": partial}
    ]
    finished = [r for r in found if r.finished]
    assert len(finished) == 1, "the simulator answered one request carrying the partial answer"
    assert all(r.messages == finished[0].messages for r in found), "only retries of it"
    messages: list[dict[str, Any]] = finished[0].messages
    return messages


async def test_a_failed_answer_is_continued_and_grows_into_one_whole_answer(
    make_cluster: ClusterFactory, database_url: str, sim: Any
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    owner = await Member.join(cluster.ws_url(0, room), cookie=people["owner"]["cookie"])
    watcher = await Member.join(cluster.ws_url(1, room), cookie=people["member"]["cookie"])
    first, failed = await _answered(
        owner, "Which cakes? [[sim tokens=40 fault=truncate fault_after=10 tps=0]]"
    )
    assert (failed["status"], failed["error"]["code"]) == ("failed", "llm_truncated")
    partial = failed["text"]
    assert partial

    await watcher.send({"type": "continue", "answer_id": first["id"]})
    assert (await _error(watcher))["code"] == "forbidden"  # not their question
    continued_at = time.time()
    await owner.send({"type": "continue", "answer_id": first["id"]})
    second = (await watcher.until(lambda f: f["type"] == "answer.start" and f["version"] == 2))[-1]
    assert second["continues"] == first["id"]
    end = await watcher.until_end(second["id"])
    assert end["status"] == "complete"
    assert end["text"].startswith(partial) and len(end["text"]) > len(partial)
    assert deltas(watcher.events, second["id"]) == end["text"]
    first_delta = next(
        f for f in watcher.events if f["type"] == "answer.delta" and f["answer_id"] == second["id"]
    )
    assert first_delta["text"] == partial  # members see the same answer grow again
    stored = stored_message(database_url, second["id"])
    assert (stored["status"], stored["text"]) == ("complete", end["text"])

    # The simulator got the text already written, as the assistant's, and the instruction.
    messages = _continuation_request(sim, partial, since=continued_at)
    assert messages[-1]["role"] == "user" and "Continue" in messages[-1]["content"]
    assert any("Which cakes?" in m["content"] for m in messages[:-2])

    # Once continued, the failed version is not continued again.
    await owner.send({"type": "continue", "answer_id": first["id"]})
    assert (await _error(owner))["code"] == "conflict"


async def test_an_answer_whose_worker_died_is_continued_on_the_other(
    make_cluster: ClusterFactory, database_url: str, sim: Any
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    cookie = people["owner"]["cookie"]
    on_a = await Member.join(cluster.ws_url(0, room), cookie=cookie)
    on_b = await Member.join(cluster.ws_url(1, room), cookie=cookie)
    await on_a.ask("A long answer, please [[sim tokens=3000 tps=40]]")
    first = (await on_b.until(lambda f: f["type"] == "answer.start"))[-1]
    await on_b.until(lambda f: f["type"] == "answer.delta" and f["seq"] > first["seq"] + 5)
    assert cluster.owner_of(first["id"]) == 0
    cluster.kill(0)
    interrupted = await on_b.until_end(first["id"], timeout=15)
    assert interrupted["status"] == "interrupted"
    partial = interrupted["text"]

    continued_at = time.time()
    await on_b.send({"type": "continue", "answer_id": first["id"]})
    second = (await on_b.until(lambda f: f["type"] == "answer.start" and f["version"] == 2))[-1]
    assert cluster.owner_of(second["id"]) == 1
    # The continuation's request carries no `[[sim]]` directive: a short answer that completes.
    end = await on_b.until_end(second["id"])
    assert end["status"] == "complete"
    assert end["text"].startswith(partial) and len(end["text"]) > len(partial)
    assert deltas(on_b.events, second["id"]) == end["text"]
    assert _continuation_request(sim, partial, since=continued_at)
    assert versions_of(database_url, first["question_id"]) == [
        (1, "interrupted", None),
        (2, "complete", first["id"]),
    ]
    stored = stored_message(database_url, second["id"])
    assert (stored["status"], stored["text"]) == ("complete", end["text"])


async def test_an_edited_question_is_a_new_question_linked_to_the_original(
    make_cluster: ClusterFactory, database_url: str, sim: Any
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    owner = await Member.join(cluster.ws_url(0, room), cookie=people["owner"]["cookie"])
    mod = await Member.join(cluster.ws_url(1, room), cookie=people["mod"]["cookie"])
    first, _ = await _answered(owner, "Is there a lemon tart? [[sim tokens=5]]")
    original = first["question_id"]

    await mod.send({"type": "edit", "question_id": original, "text": "Hijacked?"})
    assert (await _error(mod))["code"] == "forbidden"  # a moderator does not edit your words
    await owner.send({"type": "edit", "question_id": original, "text": ""})
    assert (await _error(owner))["code"] == "invalid"
    await owner.send({"type": "edit", "question_id": first["id"], "text": "An answer?"})
    assert (await _error(owner))["code"] == "not_found"  # an answer is not a question

    await owner.send(
        {
            "type": "edit",
            "question_id": original,
            "text": "Is there a lemon meringue tart? [[sim tokens=5]]",
            "client_id": "e-1",
        }
    )
    edited = (await mod.until(lambda f: f["type"] == "question" and f.get("edits")))[-1]
    assert edited["edits"] == original and edited["id"] != original
    assert edited["client_id"] == "e-1"
    start = (await mod.until(lambda f: f["type"] == "answer.start" and f["id"] != first["id"]))[-1]
    assert start["question_id"] == edited["id"] and start["version"] == 1
    assert (await mod.until_end(start["id"]))["status"] == "complete"

    # The next question's conversation has the edited question, not the one it replaced.
    await owner.ask("And the price? [[sim tokens=5]]")
    await owner.until(
        lambda f: f["type"] == "answer.start" and f["question_id"] not in (original, edited["id"])
    )
    await owner.until_end()
    # The answer (streamed) and the follow-up's rewrite before it (not streamed) both see it.
    asked = [r for r in sim.stats() if any("And the price?" in m["content"] for m in r.messages)]
    assert sorted(r.stream for r in asked) == [False, True]
    for request in asked:
        said = " ".join(m["content"] for m in request.messages)
        assert "lemon meringue tart" in said
        assert "Is there a lemon tart?" not in said
    fresh = await Member.join(cluster.ws_url(0, room), cookie=people["member"]["cookie"])
    [item] = [h for h in fresh.welcome["history"] if h["id"] == edited["id"]]
    assert item["edits"] == original


async def test_a_continuation_the_llm_refuses_ends_once_keeping_the_text_and_is_continued_again(
    make_cluster: ClusterFactory, database_url: str, sim: Any
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    owner = await Member.join(cluster.ws_url(0, room), cookie=people["owner"]["cookie"])
    watcher = await Member.join(cluster.ws_url(1, room), cookie=people["member"]["cookie"])
    first, failed = await _answered(
        owner, "Which pies? [[sim tokens=40 fault=truncate fault_after=8 tps=0]]"
    )
    partial = failed["text"]
    assert failed["status"] == "failed" and partial
    sim.configure(fault="400")  # the continuation's request carries no directive of its own
    try:
        await owner.send({"type": "continue", "answer_id": first["id"]})
        second = (await watcher.until(lambda f: f["type"] == "answer.start" and f["version"] == 2))[
            -1
        ]
        end = await watcher.until_end(second["id"])
    finally:
        sim.configure(fault=None)
    assert (end["status"], end["error"]["code"]) == ("failed", "llm_rejected")
    assert end["text"] == partial  # what was written is not lost
    assert deltas(watcher.events, second["id"]) == partial
    with pytest.raises(TimeoutError):  # exactly one end
        await watcher.until(lambda f: f.get("answer_id") == second["id"], timeout=1.5)
    assert stored_message(database_url, second["id"])["status"] == "failed"

    # The failed continuation is the latest version: it is continued in its turn.
    await owner.send({"type": "continue", "answer_id": second["id"]})
    third = (await watcher.until(lambda f: f["type"] == "answer.start"))[-1]
    assert (third["version"], third.get("continues")) == (3, second["id"])
    done = await watcher.until_end(third["id"])
    assert done["status"] == "complete" and done["text"].startswith(partial)
    assert versions_of(database_url, first["question_id"]) == [
        (1, "failed", None),
        (2, "failed", first["id"]),
        (3, "complete", second["id"]),
    ]
