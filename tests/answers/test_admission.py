"""Admission's limits for an open server, through the real ASGI application: guests counted by
their client address, a cap on answers running on the whole server, the same refusals over
WebSocket and HTTP (the hardening issue, "LLM cost")."""

from __future__ import annotations

import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chat import rooms, storage
from chat.identity import Identity
from chat.models import Message, Room
from chat.protocol import ProtocolError
from chat.runtime import get_runtime
from config.asgi import application
from tests.conftest import Client, ask_to_store, wait_for
from tests.rooms.people import person as make_person

pytestmark = pytest.mark.django_db(transaction=True)

LONG = "Talk a while [[sim tokens=400 tps=20]]"


async def guest_from(address: str, room: str) -> Client:
    """A new guest (no session: a fresh identity), connecting from `address`."""
    communicator = WebsocketCommunicator(application, f"/ws/rooms/{room}/")
    # The scope is handed to the application when it first runs, at connect.
    communicator.scope["client"] = (address, 50000)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    client = Client(communicator)
    client.welcome = (await client.recv_until(lambda f: f["type"] == "welcome"))[-1]
    return client


async def outcome(client: Client, text: str = LONG) -> dict[str, Any]:
    """What the server answered an ask with: the `answer.start`, or an `error`."""
    await client.send({"type": "ask", "text": text})
    frames = await client.recv_until(lambda f: f["type"] in ("answer.start", "error"))
    return frames[-1]


async def test_new_guests_from_one_address_share_its_limit(settings: Any, llm: Any) -> None:
    """Sixty guests without cookies once each got a fresh per-person limit; now the address
    counts: only CHAT_MAX_ANSWERS_PER_ADDRESS of their answers run at once."""
    settings.CHAT_MAX_ANSWERS_PER_ADDRESS = 2
    settings.CHAT_ADDRESS_ASK_BURST = 100
    guests = [await guest_from("203.0.113.7", f"addr{i}") for i in range(6)]
    results = [await outcome(guest) for guest in guests]
    started = [r for r in results if r["type"] == "answer.start"]
    refused = [r for r in results if r["type"] == "error"]
    assert len(started) == 2 and len(refused) == 4
    assert {r["code"] for r in refused} == {"busy"}
    assert "address" in refused[0]["message"]
    # Another address is not held back by this one.
    other = await guest_from("198.51.100.1", "addr-other")
    assert (await outcome(other))["type"] == "answer.start"
    for client in [*guests, other]:
        await client.close()


async def test_guests_from_one_address_share_an_ask_rate(settings: Any, llm: Any) -> None:
    settings.CHAT_ADDRESS_ASK_RATE_PER_MINUTE = 1
    settings.CHAT_ADDRESS_ASK_BURST = 3
    settings.CHAT_MAX_ANSWERS_PER_ADDRESS = 100
    guests = [await guest_from("203.0.113.8", f"rate{i}") for i in range(4)]
    results = [await outcome(guest, "Hello [[sim tokens=2 tps=0]]") for guest in guests]
    assert [r["type"] for r in results] == ["answer.start"] * 3 + ["error"]
    assert results[3]["code"] == "rate_limited" and results[3]["retry_after"] > 0
    for guest in guests:
        await guest.close()


async def test_the_server_caps_the_answers_running_at_once(settings: Any, llm: Any) -> None:
    settings.CHAT_MAX_ANSWERS_RUNNING = 2
    people = [await guest_from(f"192.0.2.{i}", f"cap{i}") for i in range(3)]
    results = [await outcome(person) for person in people]
    assert [r["type"] for r in results] == ["answer.start", "answer.start", "error"]
    assert results[2]["code"] == "busy" and "server" in results[2]["message"]
    # Over HTTP the same limit, the same code: 429 busy.
    response = await AsyncClient().post(
        "/api/rooms/cap-http/questions", {"text": LONG}, "application/json"
    )
    assert response.status_code == 429 and response.json()["error"]["code"] == "busy"
    # When one ends, the next is admitted.
    await people[0].send({"type": "cancel", "answer_id": results[0]["id"]})
    await people[0].recv_until(lambda f: f["type"] == "answer.end")
    runtime = await get_runtime()
    await wait_for(lambda: len(runtime.runner.running_ids()) == 1)  # its slot is given back
    assert (await outcome(people[2]))["type"] == "answer.start"
    for person in people:
        await person.close()


async def test_asks_written_together_fail_alone() -> None:
    """Asks arriving together are written in one trip and one transaction: one refused (a
    guest in a private room) is refused alone, the others are stored with their context."""
    owner = await make_person("owner")
    await database_sync_to_async(rooms.create_room)(
        "team", owner.identity, visibility=Room.Visibility.PRIVATE
    )
    guest = Identity(id="g:batch", name="Gil", is_guest=True)

    def ask(room: str, text: str) -> storage.QuestionToStore:
        return ask_to_store(room, f"q_{room}_{text}", guest, text)

    written = await database_sync_to_async(storage.create_questions_in_context)(
        [ask("open-a", "one"), ask("team", "two"), ask("open-b", "three")]
    )
    assert isinstance(written[1], ProtocolError) and written[1].code == "not_found"
    first, third = written[0], written[2]
    assert not isinstance(first, Exception) and not isinstance(third, Exception)
    assert (first[0].text, first[0].created, first[1]) == ("one", True, [])
    assert (third[0].text, third[0].created, third[1]) == ("three", True, [])

    def texts() -> list[str]:
        return sorted(Message.objects.values_list("text", flat=True))

    assert await database_sync_to_async(texts)() == ["one", "three"]


async def test_a_question_searched_as_asked_is_embedded_while_it_is_stored(
    settings: Any, llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first question of a new room is searched as asked (no conversation to rewrite it
    with): its embedding starts before its database write. A follow-up may be rewritten, so
    it is not, unless rewriting is off."""
    from chat import retrieval

    settings.CHAT_REWRITE = True
    settings.CHAT_ADDRESS_ASK_BURST = settings.CHAT_ASK_BURST = 100
    prefetched: list[str] = []
    real = retrieval.prefetch

    def recorded(query: str) -> None:
        prefetched.append(query)
        real(query)

    monkeypatch.setattr(retrieval, "prefetch", recorded)
    client = await guest_from("192.0.2.60", "ahead-room")
    first = "How much is a latte? [[sim tokens=2 tps=0]]"
    assert (await outcome(client, first))["type"] == "answer.start"
    await client.recv_until(lambda f: f["type"] == "answer.end")
    assert prefetched == [first]
    follow_up = "And with oat milk? [[sim tokens=2 tps=0]]"
    assert (await outcome(client, follow_up))["type"] == "answer.start"
    await client.recv_until(lambda f: f["type"] == "answer.end")
    assert prefetched == [first]
    settings.CHAT_REWRITE = False
    again = "And an americano? [[sim tokens=2 tps=0]]"
    assert (await outcome(client, again))["type"] == "answer.start"
    await client.recv_until(lambda f: f["type"] == "answer.end")
    assert prefetched == [first, again]
    await client.close()


async def test_a_burst_of_asks_starts_and_ends_its_answers_in_few_database_trips(
    settings: Any, llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten questions at once: their seqs, and their answers' ends (the row, then the end's
    seq), share database trips (a trip each queued them one by one on the worker's database
    thread). Each trip here takes 50 ms more, as on a busy database thread: what arrives
    meanwhile goes together in the next (a quick thread may serve them as they come)."""
    trips: dict[str, list[int]] = {
        "questions_posted": [],
        "finish_answers": [],
        "set_end_seqs": [],
    }
    for name, sizes in trips.items():
        real = getattr(storage, name)

        def counted(items: list[Any], real: Any = real, sizes: list[int] = sizes) -> Any:
            sizes.append(len(items))
            time.sleep(0.05)
            return real(items)

        monkeypatch.setattr(storage, name, counted)
    settings.CHAT_ADDRESS_ASK_BURST = settings.CHAT_ASK_BURST = 100
    settings.CHAT_MAX_ANSWERS_PER_ADDRESS = 100
    guests = [await guest_from(f"192.0.2.{70 + i}", f"burst{i}") for i in range(10)]
    for guest in guests:
        await guest.send({"type": "ask", "text": "Hi [[sim tokens=2 tps=0]]"})
    for guest in guests:
        await guest.recv_until(lambda f: f["type"] == "answer.end")
        await guest.close()
    # The end's seq is stored after the room got the end.
    await wait_for(lambda: sum(trips["set_end_seqs"]) == 10)
    for name, sizes in trips.items():
        assert sum(sizes) == 10, name
        assert len(sizes) < 10, name


async def test_ends_stored_together_fail_alone() -> None:
    """Ends stored in one trip: one that fails is rolled back alone; one already ended says
    so (False); the others are stored."""
    guest = Identity(id="g:ends", name="Eun", is_guest=True)
    await database_sync_to_async(storage.create_questions_in_context)(
        [ask_to_store("ends-room", f"q_{n}", guest, n, answer_id=f"a_{n}") for n in ("one", "two")]
    )
    done = storage.EndRow(status="complete", text="done")
    stored = await database_sync_to_async(storage.finish_answers)(
        [("a_one", done), ("a_two", storage.EndRow(status="complete", text=None)), ("a_one", done)]  # type: ignore[arg-type]
    )
    assert stored[0] is True and stored[2] is False
    assert isinstance(stored[1], Exception)

    def statuses() -> dict[str, str]:
        return dict(Message.objects.filter(role="assistant").values_list("id", "status"))

    assert await database_sync_to_async(statuses)() == {"a_one": "complete", "a_two": "streaming"}
