"""People talk across workers (the rooms issue): a `say` on worker A reaches a member on worker B
with the same seq, is in B's `welcome`, in an `after=` resume on B and in an SSE stream from B,
and is stored once in PostgreSQL; a `typing` notice on A reaches B's members and not its
sender; the assistant asked on B sees what was said on A."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.cluster.clients import Member
from tests.cluster.conftest import ClusterFactory
from tests.conftest import sse, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def stored_said(database_url: str, message_id: str) -> tuple[str, str, int | None]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select role, text, seq from chat_message where id = %s", (message_id,)
        ).fetchone()
    assert row is not None, f"{message_id} is not stored"
    return row[0], row[1], row[2]


def _with_seq(row: tuple[str, str, int | None]) -> tuple[str, str, int | None] | None:
    return row if row[2] is not None else None


async def test_a_message_said_on_one_worker_is_everywhere_on_the_other(
    make_cluster: ClusterFactory, room: str, database_url: str, sim: Any
) -> None:
    cluster = make_cluster(workers=2)
    on_a = await Member.join(cluster.ws_url(0, room))
    on_b = await Member.join(cluster.ws_url(1, room))
    start = on_b.welcome["seq"]

    # Typing on A: B's member is told, A's sender is not.
    await on_a.send({"type": "typing"})
    typing = (await on_b.until(lambda f: f["type"] == "typing"))[-1]
    assert typing == {"type": "typing", "user": on_a.welcome["user"]}

    await on_a.send({"type": "say", "text": "케이크는 제가 가져갈게요", "client_id": "x-1"})
    said = (await on_b.until(lambda f: f["type"] == "message"))[-1]
    assert said["seq"] == start + 1
    assert said["user"] == on_a.welcome["user"]
    assert (said["text"], said["client_id"]) == ("케이크는 제가 가져갈게요", "x-1")
    seen_on_a = await on_a.until(lambda f: f["type"] == "message")
    assert seen_on_a[-1] == said
    assert all(f["type"] != "typing" for f in [*on_a.others, *seen_on_a])
    # The row gets its seq just after the event is posted (storage.question_posted): a member
    # may read the event first (this failed once under load).
    stored = await wait_for(lambda: _with_seq(stored_said(database_url, said["id"])))
    assert stored == ("message", said["text"], said["seq"])

    # B's welcome holds it, as a `message` history item.
    fresh = await Member.join(cluster.ws_url(1, room))
    assert fresh.welcome["seq"] == said["seq"]
    assert fresh.welcome["history"][-1] == {
        "seq": said["seq"],
        "id": said["id"],
        "role": "message",
        "text": said["text"],
        "status": "complete",
        "created": said["created"],
        "user": said["user"],
        "client_id": "x-1",
    }
    # A resume on B replays it.
    resumed = await Member.join(cluster.ws_url(1, room, after=start))
    assert resumed.welcome["resumed"] is True
    assert (await resumed.until(lambda f: f["type"] == "message"))[-1] == said
    # So does an event stream from B.
    async with (
        httpx.AsyncClient(base_url=cluster.url(1), timeout=20) as http,
        sse(http, f"/api/rooms/{room}/events?after={start}") as stream,
    ):
        welcome = await stream.event()
        assert welcome.event == "welcome" and welcome.json()["resumed"] is True
        event = (await stream.until(lambda e: e.event == "message"))[-1]
        assert event.id == str(said["seq"]) and event.json() == said

    # The assistant, asked on B, sees what was said on A, with who said it.
    await on_b.ask("What will be brought?")
    end = await on_b.until_end()
    assert end["status"] == "complete"
    # The answer's request, streamed (the follow-up's rewrite, not streamed, names it too).
    [request] = [
        r
        for r in sim.stats()
        if r.stream and any("What will be brought?" in m["content"] for m in r.messages)
    ]
    name = on_a.welcome["user"]["name"]
    assert {"role": "user", "content": f"{name}: 케이크는 제가 가져갈게요"} in request.messages
    for member in (on_a, on_b, fresh, resumed):
        await member.close()
