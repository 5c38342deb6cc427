"""Feedback, history pages and search across two real workers on Redis and PostgreSQL:
votes given at once on both workers end with the same exact counts for every member, in
fresh welcomes on both workers and in the database; pages and search read PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg
import pytest

from tests.cluster.clients import Member
from tests.cluster.conftest import ClusterFactory

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def _room(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_votes_at_once_on_two_workers_end_with_the_same_counts_everywhere(
    make_cluster: ClusterFactory, database_url: str
) -> None:
    cluster = make_cluster(workers=2)
    room = _room("votes")
    asker = await Member.join(cluster.ws_url(0, room))
    await asker.ask("라떼 가격이 얼마예요?")
    end = await asker.until_end()
    answer_id = end["answer_id"]
    # Twelve people (guests, each with the session the room page gave them), half on each
    # worker.
    voters = [
        await Member.join(cluster.ws_url(i % 2, room), cookie=cluster.session_cookie(i % 2, room))
        for i in range(12)
    ]
    values = ["up"] * 7 + ["down"] * 5
    await asyncio.gather(
        *(
            voter.send({"type": "feedback", "answer_id": answer_id, "value": value})
            for voter, value in zip(voters, values, strict=True)
        )
    )
    # Two change their minds, one takes it back, at once.
    await asyncio.gather(
        voters[0].send({"type": "feedback", "answer_id": answer_id, "value": "down"}),
        voters[1].send({"type": "feedback", "answer_id": answer_id, "value": None}),
        voters[11].send({"type": "feedback", "answer_id": answer_id, "value": "up"}),
    )
    final = {"up": 6, "down": 5, "rev": 15}
    for member in [asker, *voters]:
        frames = await member.until(
            lambda f: f["type"] == "answer.feedback" and f["rev"] == final["rev"]
        )
        assert not [f for f in frames if f["type"] == "error"], frames
        seen = [f for f in member.events if f["type"] == "answer.feedback"]
        # Every change reached everyone (in the log's order, which need not be rev order);
        # the highest rev holds the counts.
        assert sorted(f["rev"] for f in seen) == list(range(1, 16))
        latest = max(seen, key=lambda f: f["rev"])
        assert {k: latest[k] for k in ("up", "down", "rev")} == final
    for index in (0, 1):
        fresh = await Member.join(cluster.ws_url(index, room))
        [item] = [m for m in fresh.welcome["history"] if m["id"] == answer_id]
        assert item["feedback"] == final
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select up, down, rev from chat_feedbackcount where answer_id = %s", (answer_id,)
        ).fetchone()
        votes = conn.execute(
            "select value, count(*) from chat_feedback where answer_id = %s group by value",
            (answer_id,),
        ).fetchall()
    assert row == (6, 5, 15) and dict(votes) == {"up": 6, "down": 5}


async def test_pages_and_search_on_postgresql_while_the_other_worker_writes(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(
        workers=2, env={"CHAT_SAY_BURST": "1000", "CHAT_SAY_RATE_PER_MINUTE": "60000"}
    )
    room = _room("pages")
    writer = await Member.join(cluster.ws_url(0, room))
    texts = ["아이스 아메리카노 두 잔", "Oat LATTE, please", "케이크 있어요?"] + [
        f"message {n}" for n in range(20)
    ]
    for text in texts:
        await writer.send({"type": "say", "text": text})
        await writer.until(lambda f, text=text: f["type"] == "message" and f["text"] == text)
    cursor_seq = writer.last_seq

    async def keep_writing() -> None:
        for n in range(15):
            await writer.send({"type": "say", "text": f"meanwhile {n}"})
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(base_url=cluster.url(1), timeout=20) as http:
        chatter = asyncio.create_task(keep_writing())
        body = (
            await http.get(
                f"/api/rooms/{room}/history", params={"before": cursor_seq + 1, "limit": 4}
            )
        ).json()
        seen = [m["text"] for m in body["messages"]]
        while body["before"] is not None:
            body = (
                await http.get(
                    f"/api/rooms/{room}/history", params={"before": body["before"], "limit": 4}
                )
            ).json()
            seen = [m["text"] for m in body["messages"]] + seen
        await chatter
        assert seen == texts

        async def found(q: str) -> list[str]:
            response = await http.get(f"/api/rooms/{room}/search", params={"q": q})
            assert response.status_code == 200, response.text
            return [m["text"] for m in response.json()["messages"]]

        assert await found("아메리카노") == ["아이스 아메리카노 두 잔"]
        assert await found("아이스아메리카노") == ["아이스 아메리카노 두 잔"]
        assert await found("oat latte") == ["Oat LATTE, please"]
        assert await found("100%") == []
        too_long = await http.get(f"/api/rooms/{room}/search", params={"q": "가" * 101})
        assert too_long.status_code == 413
        clamped = await http.get(f"/api/rooms/{room}/history", params={"limit": 100000})
        assert clamped.status_code == 200 and clamped.json()["limit"] == 200
