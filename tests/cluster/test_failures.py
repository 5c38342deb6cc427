"""Answers across workers and failures: a cancel sent through another worker stops the
answer where it runs (4), a killed worker's answer ends `interrupted` for everyone (5), and a
Redis restart leaves nobody silently deaf (6)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.cluster.clients import Frame, Member, deltas, stored_message
from tests.cluster.conftest import ClusterFactory
from tests.cluster.harness import redis_server
from tests.conftest import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


async def test_a_cancel_through_another_worker_stops_the_answer_within_a_second(
    make_cluster: ClusterFactory, room: str, sim: Any, database_url: str, record_property: Any
) -> None:
    """Property 4: the asker's second tab, on worker 1, cancels the answer worker 0 runs."""
    cluster = make_cluster(workers=2)
    cookie = cluster.session_cookie(0, room)  # one person, two tabs on two workers
    tab0 = await Member.join(cluster.ws_url(0, room), cookie=cookie)
    tab1 = await Member.join(cluster.ws_url(1, room), cookie=cookie)
    assert tab0.welcome["user"] == tab1.welcome["user"]
    asked = time.time()
    await tab0.ask("Talk for a long time [[sim tokens=3000 tps=50]]")
    start = (await tab1.until(lambda f: f["type"] == "answer.start"))[-1]
    await tab1.until(lambda f: f["type"] == "answer.delta")
    assert cluster.owner_of(start["id"]) == 0
    began = time.monotonic()
    await tab1.send({"type": "cancel", "answer_id": start["id"]})
    end = await tab1.until_end(start["id"], timeout=10)
    elapsed = time.monotonic() - began
    record_property("cancel_seconds", round(elapsed, 3))
    assert end["status"] == "cancelled"
    assert elapsed < 1.0, f"the cancel took {elapsed:.2f} s"
    assert end["text"] == deltas(tab1.events, start["id"])
    assert (await tab0.until_end(start["id"]))["status"] == "cancelled"
    # The upstream request was closed early: the LLM stopped generating.
    records = await wait_for(
        lambda: [r for r in sim.stats() if r.started >= asked and (r.ended or r.finished or False)],
        timeout=10,
    )
    assert records[-1].client_disconnected_early and not records[-1].finished
    assert records[-1].tokens_sent < 3000
    assert stored_message(database_url, start["id"])["status"] == "cancelled"
    await asyncio.gather(tab0.close(), tab1.close())


async def test_killing_the_worker_of_an_answer_ends_it_interrupted_for_everyone(
    make_cluster: ClusterFactory, room: str, database_url: str, record_property: Any
) -> None:
    """Property 5: SIGKILL worker 0 mid-answer; members on worker 1 get one `answer.end`
    (`interrupted`) within 5 s, and the database keeps the text streamed so far."""
    cluster = make_cluster(workers=2)
    asker = await Member.join(cluster.ws_url(0, room))
    watchers = [await Member.join(cluster.ws_url(1, room)) for _ in range(2)]
    await asker.ask("A long answer [[sim tokens=3000 tps=40]]")
    start = (await watchers[0].until(lambda f: f["type"] == "answer.start"))[-1]
    await watchers[0].until(lambda f: f["type"] == "answer.delta" and f["seq"] > start["seq"] + 5)
    assert cluster.owner_of(start["id"]) == 0
    cluster.kill(0)
    killed = time.monotonic()
    for watcher in watchers:
        end = await watcher.until_end(start["id"], timeout=10)
        record_property("interrupted_after_seconds", round(time.monotonic() - killed, 3))
        assert time.monotonic() - killed < 5.0
        assert end["status"] == "interrupted"
        assert end["error"]["code"] == "interrupted"
        assert end["text"] == deltas(watcher.events, start["id"])
        assert end["text"]
    # Exactly once: nothing more of this answer arrives (a bounded wait for an absence).
    with pytest.raises(TimeoutError):
        await watchers[0].until(lambda f: f.get("answer_id") == start["id"], timeout=2.5)
    assert watchers[0].events == watchers[1].events[: len(watchers[0].events)]
    stored = stored_message(database_url, start["id"])
    assert (stored["status"], stored["text"]) == ("interrupted", end["text"])
    # The room goes on: the surviving worker answers the next question.
    await watchers[1].ask("Still there? [[sim tokens=5]]")
    assert (await watchers[0].until_end())["status"] == "complete"
    await asyncio.gather(*(w.close() for w in watchers))


async def _follow(member: Member, cluster: Any, room: str, worker: int) -> Member:
    """Keep a member in the room as a client should: reconnect with `after` on a 1012."""
    assert await member.closed(timeout=60) == 1012
    return await Member.join(cluster.ws_url(worker, room, after=member.last_seq))


async def test_a_redis_restart_leaves_nobody_silently_deaf(
    make_cluster: ClusterFactory, room: str, database_url: str
) -> None:
    """Property 6: Redis (no persistence) restarts while an answer streams. Workers
    reconnect; members are closed with 1012 and resume (a full welcome: the events are gone);
    the streaming answer ends once for everyone; new questions are answered."""
    with redis_server() as redis:
        cluster = make_cluster(workers=2, redis=redis)
        members = [await Member.join(cluster.ws_url(i % 2, room)) for i in range(3)]
        await members[0].ask("Before [[sim tokens=5]]")
        for member in members:
            await member.until_end()
        dropped = members.pop()  # leaves before the restart, resumes after it
        await dropped.close()
        await members[0].ask("During [[sim tokens=300 tps=50]]")
        start = (await members[1].until(lambda f: f["type"] == "answer.start"))[-1]
        await members[1].until(lambda f: f["type"] == "answer.delta")
        await asyncio.to_thread(cluster.restart_redis)
        # Every member is told to resume (1012), resumes, and sees the answer end.
        endings: list[Frame] = []
        for index, member in enumerate(members):
            fresh = await _follow(member, cluster, room, index % 2)
            assert fresh.welcome["resumed"] is False  # Redis lost the events: full welcome
            message = next(m for m in fresh.welcome["history"] if m["id"] == start["id"])
            if message["status"] == "streaming":
                end = await fresh.until_end(start["id"], timeout=30)
                assert fresh.events[0]["seq"] == fresh.welcome["seq"] + 1
            else:
                end = {"status": message["status"], "text": message["text"]}
            endings.append(end)
            members[index] = fresh
        assert [(e["status"], e["text"]) for e in endings] == [("complete", endings[0]["text"])] * 2
        stored = stored_message(database_url, start["id"])
        assert (stored["status"], stored["text"]) == ("complete", endings[0]["text"])
        # A client resuming with a cursor from before the restart gets a full welcome.
        back = await Member.join(cluster.ws_url(1, room, after=dropped.last_seq))
        assert back.welcome["resumed"] is False
        assert back.welcome["history"][-1]["id"] == start["id"]
        # New questions are answered, and everyone (on both workers) gets them.
        await back.ask("After [[sim tokens=6]]")
        for member in [*members, back]:
            end = await member.until_end(timeout=30)
            assert end["status"] == "complete"
        # Presence crosses workers again (their channel-layer groups were lost with Redis).
        newcomer = await Member.join(cluster.ws_url(1, room))
        await members[0].until(
            lambda f: f["type"] == "presence" and newcomer.welcome["user"] in f["members"]
        )
        # A cursor from after the restart resumes normally again.
        again = await Member.join(cluster.ws_url(0, room, after=back.last_seq - 3))
        assert again.welcome["resumed"] is True
        await again.until(lambda f: f["type"] == "answer.end")
        assert [f["seq"] for f in again.events] == [
            back.last_seq - 2,
            back.last_seq - 1,
            back.last_seq,
        ]
        await asyncio.gather(*(m.close() for m in [*members, back, again, newcomer]))
