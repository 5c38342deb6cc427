"""Members of one room on different workers see one room: the same events in the same order
with the same consecutive seqs (1), a member joining mid-answer gets the text so far and then
every later delta (2), and a member resuming on another worker gets exactly what it missed,
or a full welcome once the log no longer holds it (3)."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.clients import Member, assert_consecutive, deltas, stored_message
from tests.cluster.conftest import ClusterFactory

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


async def test_members_on_every_worker_see_the_same_events(
    make_cluster: ClusterFactory, room: str, database_url: str
) -> None:
    """Property 1, with two answers streaming at once, asked through different workers, and a
    member that comes in through the load balancer (nginx) when it is installed."""
    cluster = make_cluster(workers=2)
    balanced = cluster.start_balancer()  # False without nginx (scripts/provision-test)
    alice = await Member.join(cluster.ws_url(0, room))
    bob = await Member.join(cluster.ws_url(1, room))
    carol = await Member.join(cluster.ws_url(None if balanced else 1, room))
    members = [alice, bob, carol]
    assert len({m.welcome["seq"] for m in members}) == 1
    await alice.ask("First question [[sim tokens=80 tps=100]]")
    await bob.ask("Second question [[sim tokens=60 tps=120]]")

    def ends(member: Member) -> int:
        return sum(f["type"] == "answer.end" for f in member.events)

    for member in members:
        await member.until(lambda f, m=member: ends(m) == 2, timeout=60)  # type: ignore[misc]
    start = alice.welcome["seq"] + 1
    for member in members:
        assert_consecutive(member.events, start)
    assert alice.events == bob.events == carol.events
    for end in (f for f in alice.events if f["type"] == "answer.end"):
        assert end["status"] == "complete"
        assert end["text"] == deltas(alice.events, end["answer_id"])
        assert stored_message(database_url, end["answer_id"]) == {
            "status": "complete",
            "text": end["text"],
            "error": None,
        }
    for member in members:
        await member.close()


async def test_joining_mid_answer_gets_the_text_so_far_then_every_delta(
    make_cluster: ClusterFactory, room: str
) -> None:
    """Property 2: the welcome's streaming message plus the later deltas is the answer."""
    cluster = make_cluster(workers=2)
    alice = await Member.join(cluster.ws_url(0, room))
    await alice.ask("Tell me a long story [[sim tokens=150 tps=60]]")
    await alice.until(lambda f: f["type"] == "answer.delta")
    await alice.until(lambda f: f["type"] == "answer.delta")
    dave = await Member.join(cluster.ws_url(1, room))  # the other worker, mid-answer
    streaming = [m for m in dave.welcome["history"] if m["status"] == "streaming"]
    assert len(streaming) == 1
    answer_id = streaming[0]["id"]
    end = await dave.until_end(answer_id)
    assert_consecutive(dave.events, dave.welcome["seq"] + 1)
    assert streaming[0]["text"] + deltas(dave.events, answer_id) == end["text"]
    assert streaming[0]["text"]  # it really joined mid-answer
    await alice.until_end(answer_id)
    assert [f for f in alice.events if f["seq"] > dave.welcome["seq"]] == dave.events
    await alice.close()
    await dave.close()


async def test_resuming_on_the_other_worker_gets_exactly_the_missed_events(
    make_cluster: ClusterFactory, room: str
) -> None:
    """Property 3: drop from worker 0, reconnect to worker 1 with `after`."""
    cluster = make_cluster(workers=2)
    alice = await Member.join(cluster.ws_url(1, room))
    bob = await Member.join(cluster.ws_url(0, room))
    await alice.ask("Explain everything [[sim tokens=300 tps=60]]")
    await bob.until(lambda f: f["type"] == "answer.delta")
    await bob.close()
    last = bob.last_seq
    await alice.until(lambda f: f["type"] == "answer.delta" and f["seq"] > last + 3)
    bob2 = await Member.join(cluster.ws_url(1, room, after=last))
    assert (bob2.welcome["resumed"], bob2.welcome["seq"], bob2.welcome["history"]) == (
        True,
        last,
        [],
    )
    end = await bob2.until_end()
    await alice.until_end()
    assert_consecutive(bob2.events, last + 1)
    assert bob2.events == [f for f in alice.events if f["seq"] > last]
    assert deltas(bob.events + bob2.events, end["answer_id"]) == end["text"]
    await alice.close()
    await bob2.close()


async def test_resuming_past_the_retention_gets_a_full_welcome(
    make_cluster: ClusterFactory, room: str
) -> None:
    """Property 3, second half: the log keeps CHAT_LOG_RETENTION_EVENTS (here 20) events
    (Redis trims approximately: at least that many, never the hundreds missed here)."""
    cluster = make_cluster(workers=2, env={"CHAT_LOG_RETENTION_EVENTS": "20"})
    alice = await Member.join(cluster.ws_url(0, room))
    bob = await Member.join(cluster.ws_url(1, room))
    await alice.ask("Short one [[sim tokens=3]]")
    await alice.until_end()
    await bob.until_end()
    await bob.close()
    last = bob.last_seq
    # Far more events than the log keeps (deltas merge when the machine is busy: ask on).
    for _ in range(6):
        await alice.ask("A long answer [[sim tokens=300 tps=150]]")
        end = await alice.until_end(timeout=90)
        if alice.last_seq - last > 300:
            break
    assert alice.last_seq - last > 300
    bob2 = await Member.join(cluster.ws_url(0, room, after=last))
    assert bob2.welcome["resumed"] is False
    assert bob2.welcome["seq"] == alice.last_seq
    assert bob2.welcome["history"][-1]["text"] == end["text"]
    assert bob2.welcome["history"][-1]["status"] == "complete"
    # A cursor inside what the log still holds resumes normally.
    bob3 = await Member.join(cluster.ws_url(1, room, after=alice.last_seq - 5))
    assert bob3.welcome["resumed"] is True
    await asyncio.gather(alice.close(), bob2.close(), bob3.close())
