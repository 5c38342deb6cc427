"""History pages and search through the real ASGI application on SQLite (PostgreSQL: see
tests/cluster/test_history.py). Pages never give a message twice or skip one at their edges,
also while messages keep arriving; search finds Korean and English substrings as a Korean
reader expects, never what a moderator removed, and only in rooms the person may read."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import pytest
from django.test import AsyncClient

from chat.history import pages
from tests.conftest import Client, connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _chatty(settings: Any) -> None:
    settings.CHAT_SAY_BURST = 1000
    settings.CHAT_SAY_RATE_PER_MINUTE = 60_000
    settings.CHAT_FRAME_RATE_PER_SECOND = 1000


async def _say(client: Client, text: str) -> dict[str, Any]:
    await client.send({"type": "say", "text": text})
    frames = await client.recv_until(lambda f: f["type"] == "message" and f["text"] == text)
    return frames[-1]


async def _get(path: str, **params: Any) -> Any:
    return await AsyncClient().get(path, params)


async def test_paging_back_to_the_beginning_gives_every_message_once_in_order() -> None:
    alice = await connect("pages")
    said = [await _say(alice, f"message {n}") for n in range(7)]
    answer = await alice.answer("질문 하나")
    said += [await _say(alice, f"message {n}") for n in range(7, 12)]
    newest = await _get("/api/rooms/pages/history", limit=5)
    body = newest.json()
    assert newest.status_code == 200 and body["limit"] == 5
    ids: list[str] = [m["id"] for m in body["messages"]]
    seqs: list[int] = [m["seq"] for m in body["messages"]]
    while body["before"] is not None:
        body = (await _get("/api/rooms/pages/history", before=body["before"], limit=5)).json()
        assert body["messages"], body
        ids = [m["id"] for m in body["messages"]] + ids
        seqs = [m["seq"] for m in body["messages"]] + seqs
    expected = [m["id"] for m in said[:7]] + [answer[0]["id"], answer[1]["id"]]
    expected += [m["id"] for m in said[7:]]
    assert ids == expected
    assert seqs == sorted(seqs) and len(set(ids)) == len(ids)
    await alice.close()


async def test_welcome_items_carry_their_seq_to_page_on_from() -> None:
    alice = await connect("pages-welcome")
    said = [await _say(alice, f"m{n}") for n in range(5)]
    fresh = await connect("pages-welcome")
    assert [m["seq"] for m in fresh.welcome["history"]] == [m["seq"] for m in said]
    oldest_shown = fresh.welcome["history"][2]["seq"]
    older = (await _get("/api/rooms/pages-welcome/history", before=oldest_shown)).json()
    assert [m["id"] for m in older["messages"]] == [said[0]["id"], said[1]["id"]]
    assert older["before"] is None
    for client in (alice, fresh):
        await client.close()


async def test_pages_have_no_gap_or_repeat_while_messages_keep_arriving() -> None:
    alice = await connect("pages-busy")
    for n in range(40):
        await _say(alice, f"before {n}")
    writer = await connect("pages-busy")
    stop = asyncio.Event()

    async def keep_saying() -> int:
        count = 0
        while not stop.is_set():
            await writer.send({"type": "say", "text": f"meanwhile {count}"})
            count += 1
            await asyncio.sleep(0)
        return count

    chatter = asyncio.create_task(keep_saying())
    body = (await _get("/api/rooms/pages-busy/history", limit=7)).json()
    seen = [m["id"] for m in body["messages"]]
    first_page_seqs = [m["seq"] for m in body["messages"]]
    while body["before"] is not None:
        body = (await _get("/api/rooms/pages-busy/history", before=body["before"], limit=7)).json()
        seen = [m["id"] for m in body["messages"]] + seen
        await asyncio.sleep(0.01)  # more arrive between pages
    stop.set()
    await chatter
    everything = (await _get("/api/rooms/pages-busy/history", limit=200)).json()["messages"]
    up_to = [m["id"] for m in everything if m["seq"] <= max(first_page_seqs)]
    assert len(everything) > len(up_to)  # messages did arrive meanwhile
    assert seen == up_to and len(set(seen)) == len(seen)
    for client in (alice, writer):
        await client.close()


@pytest.mark.parametrize(
    ("query", "code", "status"),
    [
        ({"before": "0"}, "invalid", 400),
        ({"before": "-3"}, "invalid", 400),
        ({"before": "1.5"}, "invalid", 400),
        ({"before": "٣"}, "invalid", 400),  # a digit, but not an ASCII one
        ({"before": "7\n"}, "invalid", 400),
        ({"limit": "0"}, "invalid", 400),
        ({"limit": "ten"}, "invalid", 400),
        ({"limit": "9" * 40}, "invalid", 400),
    ],
)
async def test_bad_page_cursors_are_invalid(query: dict[str, str], code: str, status: int) -> None:
    response = await _get("/api/rooms/pages-bad/history", **query)
    assert response.status_code == status and response.json()["error"]["code"] == code


async def test_a_page_size_over_the_maximum_is_clamped() -> None:
    response = await _get("/api/rooms/pages-clamp/history", limit=str(pages.PAGE_MAX + 1))
    assert response.status_code == 200
    assert response.json() == {"messages": [], "before": None, "limit": pages.PAGE_MAX}


async def test_search_finds_korean_and_english_substrings_as_a_reader_expects() -> None:
    alice = await connect("search")
    iced = await _say(alice, "아이스 아메리카노 두 잔 주세요")
    latte = await _say(alice, "Is the Oat LATTE sweet?")
    await _say(alice, "케이크는 없나요")
    nfd = unicodedata.normalize("NFD", "아메리카노")

    async def found(q: str) -> list[str]:
        response = await _get("/api/rooms/search/search", q=q)
        assert response.status_code == 200, response.json()
        return [m["id"] for m in response.json()["messages"]]

    assert await found("아메리카노") == [iced["id"]]
    assert await found("아이스아메리카노") == [iced["id"]]  # Korean spacing varies
    assert await found(nfd) == [iced["id"]]  # jamo typed apart (NFD) find it too
    assert await found("oat latte") == [latte["id"]]
    assert await found("%") == [] and await found("_") == []  # not LIKE wildcards
    assert await found("커피") == []
    await alice.close()


async def test_search_never_finds_a_removed_message() -> None:
    from chat.models import Message

    alice = await connect("search-redacted")
    said = await _say(alice, "비밀 메뉴는 민트초코")
    await Message.objects.filter(id=said["id"]).aupdate(text="", redacted=True)
    response = await _get("/api/rooms/search-redacted/search", q="민트초코")
    assert response.json()["messages"] == []
    await alice.close()


@pytest.mark.parametrize(
    ("q", "code", "status"),
    [
        ("", "invalid", 400),
        ("   ", "invalid", 400),
        ("a\x00b", "invalid", 400),
        ("가" * 101, "too_long", 413),
    ],
)
async def test_an_empty_or_too_long_search_is_refused(
    q: str, code: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    response = await _get("/api/rooms/search-bad/search", q=q)
    assert response.status_code == status and response.json()["error"]["code"] == code
    # Bad input is the client's: nothing above INFO in the server's log.
    assert not [r for r in caplog.records if r.levelno > 20]
