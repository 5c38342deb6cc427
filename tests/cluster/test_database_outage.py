"""PostgreSQL goes away while an answer streams: the workers reach it through a TCP proxy
(tests/tcp_proxy.py) that the tests cut and restore. Members must still get the answer's one
`answer.end` at once, and the database must end up holding what they saw: stored by the
owning worker's retries when the database returns, or, if that worker died meanwhile,
repaired by another worker from the end the room log holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from redis.asyncio import Redis

from tests.cluster.clients import Frame, Member, deltas
from tests.cluster.conftest import ClusterFactory
from tests.conftest import wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

# Long enough to cut the database before it ends, short enough to end during the cut.
LONG_ANSWER = "Tell me everything [[sim tokens=300 tps=60]]"
# Longer leases than the cluster's 3 s: on a loaded machine a worker's first answer (importing
# the LLM client) can stall its event loop past 3 s, and a reaper would end the answer early.
# Nothing here waits for a lease to expire.
LEASE = {"CHAT_LEASE_SECONDS": "15"}


@pytest.fixture
def database_proxy(database_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the test database's PostgreSQL server. A test names it before
    `make_cluster`, so that it is stopped after the workers: stopped while they reconnect
    through it, the connections it is accepting as it closes are left to the collector."""
    parts = urlsplit(database_url)
    assert parts.hostname is not None and parts.port is not None
    with TcpProxy(parts.hostname, parts.port) as proxy:
        yield proxy


def through(proxy: TcpProxy, database_url: str) -> str:
    """The database URL with the proxy in place of the server."""
    parts = urlsplit(database_url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{proxy.url_host}"))


def stored_answer(database_url: str, answer_id: str) -> dict[str, Any]:
    """The answer's row, read from PostgreSQL directly (never through the proxy)."""
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        row = conn.execute(
            "select status, text, end_seq from chat_message where id = %s", (answer_id,)
        ).fetchone()
    assert row is not None, f"{answer_id} is not stored"
    return {"status": row[0], "text": row[1], "end_seq": row[2]}


async def stored_once_ended(
    database_url: str, answer_id: str, timeout: float, *, with_end_seq: bool = True
) -> dict[str, Any]:
    """Wait (bounded) until the row is no longer `streaming` (and has its end's seq); the row,
    or the row as it is when the time is up (the assertions that follow say what is wrong)."""
    ended: dict[str, Any] = {}

    async def check() -> bool:
        ended.update(await asyncio.to_thread(stored_answer, database_url, answer_id))
        return ended["status"] != "streaming" and (ended["end_seq"] or not with_end_seq)

    with contextlib.suppress(TimeoutError):
        await wait_for(check, timeout=timeout, interval=0.5)
    return ended


async def ask_and_cut(
    asker: Member, watcher: Member, proxy: TcpProxy, mode: Literal["refuse", "hold"] = "refuse"
) -> Frame:
    """Ask a long answer and cut the database once it streams; its `answer.start`."""
    await asker.ask(LONG_ANSWER)
    start = (await watcher.until(lambda f: f["type"] == "answer.start"))[-1]
    await watcher.until(lambda f: f["type"] == "answer.delta" and f["answer_id"] == start["id"])
    proxy.cut(mode)
    return start


async def assert_one_complete_end(members: list[Member], answer_id: str) -> Frame:
    """Every member got the answer's end, `complete` with all its text, exactly once."""
    ends = [await m.until_end(answer_id, timeout=60) for m in members]
    for member, end in zip(members, ends, strict=True):
        assert end["status"] == "complete"
        assert end["text"] and end["text"] == deltas(member.events, answer_id)
    assert len({(e["seq"], e["text"]) for e in ends}) == 1
    # Nothing more of this answer follows its end (a bounded wait for an absence).
    with pytest.raises(TimeoutError):
        await members[0].until(lambda f: f.get("answer_id") == answer_id, timeout=2)
    return ends[0]


async def forget_room_in_redis(redis_url: str, room: str) -> None:
    """Drop the room's keys, as their expiry does: the next join seeds it from the database."""
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"chat:room:{{{room}}}:*")]
        assert keys
        await client.delete(*keys)
    finally:
        await client.aclose()


async def test_an_end_written_while_the_database_is_away_is_stored_when_it_returns(
    database_proxy: TcpProxy,  # first: stopped after the cluster (see the fixture)
    make_cluster: ClusterFactory,
    room: str,
    database_url: str,
    record_property: Any,
) -> None:
    """One worker; the database is cut mid-answer and the answer ends during the cut. Members
    get `complete` promptly; the worker's retries store the same end (and its seq) once the
    database is back; a welcome seeded from the database afterwards shows it complete."""
    cluster = make_cluster(
        workers=1, env={"DATABASE_URL": through(database_proxy, database_url), **LEASE}
    )
    members = [await Member.join(cluster.ws_url(0, room)) for _ in range(2)]
    start = await ask_and_cut(members[0], members[1], database_proxy)
    cut_at = time.monotonic()
    end = await assert_one_complete_end(members, start["id"])
    record_property("end_after_cut_seconds", round(time.monotonic() - cut_at, 3))
    # The outage goes on for a few seconds after the end: the retries fail meanwhile.
    assert stored_answer(database_url, start["id"])["status"] == "streaming"
    await asyncio.sleep(max(0.0, 12.0 - (time.monotonic() - cut_at)))
    assert stored_answer(database_url, start["id"])["status"] == "streaming"
    database_proxy.restore()
    restored_at = time.monotonic()

    stored = await stored_once_ended(database_url, start["id"], timeout=60)
    record_property("stored_after_restore_seconds", round(time.monotonic() - restored_at, 3))
    assert (stored["status"], stored["text"]) == ("complete", end["text"])
    assert stored["end_seq"] == end["seq"]
    log = cluster.logs(0)
    assert log.count(f"Could not store the end of answer {start['id']}") == 1
    assert f"Stored the end of answer {start['id']} after" in log

    # Once the room's keys expire, a welcome comes from the database: it must say the same.
    await asyncio.gather(*(m.close() for m in members))
    await asyncio.sleep(1.0)  # the hub lets go of the room once its last member left
    await forget_room_in_redis(cluster.redis.url, room)
    fresh = await Member.join(cluster.ws_url(0, room))
    message = next(m for m in fresh.welcome["history"] if m["id"] == start["id"])
    assert (message["status"], message["text"]) == ("complete", end["text"])
    await fresh.close()


async def test_a_worker_repairs_the_end_the_dead_owner_could_not_store(
    database_proxy: TcpProxy,  # first: stopped after the cluster (see the fixture)
    make_cluster: ClusterFactory,
    room: str,
    database_url: str,
    record_property: Any,
) -> None:
    """Two workers; the database is cut, the answer ends during the cut, then its worker is
    killed before its retries can succeed. When the database returns, the other worker stores
    the end the room log holds."""
    cluster = make_cluster(
        workers=2, env={"DATABASE_URL": through(database_proxy, database_url), **LEASE}
    )
    asker = await Member.join(cluster.ws_url(0, room))
    watcher = await Member.join(cluster.ws_url(1, room))
    start = await ask_and_cut(asker, watcher, database_proxy)
    assert cluster.owner_of(start["id"]) == 0
    end = await assert_one_complete_end([watcher, asker], start["id"])
    await asker.close()
    await asyncio.sleep(2.0)  # the owner's retries are failing
    cluster.kill(0)
    assert stored_answer(database_url, start["id"])["status"] == "streaming"
    database_proxy.restore()
    restored_at = time.monotonic()

    # The log's view does not keep an end's seq: the repair cannot store it.
    stored = await stored_once_ended(database_url, start["id"], timeout=90, with_end_seq=False)
    record_property("repaired_after_restore_seconds", round(time.monotonic() - restored_at, 3))
    assert (stored["status"], stored["text"]) == ("complete", end["text"])
    assert f"Answer {start['id']}: stored the end the room log holds" in cluster.logs(1)
    # Nothing reached the watcher after the end: the repair is the database's business only.
    assert [f for f in watcher.events if f.get("answer_id") == start["id"]][-1] == end
    await watcher.close()


async def test_a_database_that_hangs_does_not_hold_the_end_back(
    database_proxy: TcpProxy,  # first: stopped after the cluster (see the fixture)
    make_cluster: ClusterFactory,
    room: str,
    database_url: str,
    record_property: Any,
) -> None:
    """The database does not refuse but hangs (the proxy holds new connections: a black hole,
    and the worker's one database thread waits in `connect`). Members still get the end while
    it hangs, and the end is stored once it answers again."""
    cluster = make_cluster(
        workers=1, env={"DATABASE_URL": through(database_proxy, database_url), **LEASE}
    )
    members = [await Member.join(cluster.ws_url(0, room)) for _ in range(2)]
    start = await ask_and_cut(members[0], members[1], database_proxy, mode="hold")
    end = await assert_one_complete_end(members, start["id"])
    assert stored_answer(database_url, start["id"])["status"] == "streaming"
    database_proxy.restore()
    stored = await stored_once_ended(database_url, start["id"], timeout=60)
    assert (stored["status"], stored["text"], stored["end_seq"]) == (
        "complete",
        end["text"],
        end["seq"],
    )
    assert "no reply within" in cluster.logs(0)
    await asyncio.gather(*(m.close() for m in members))
