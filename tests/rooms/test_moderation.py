"""Moderation through the real ASGI application (one worker, the in-memory room log): redacting
takes the text out of the database, the live room, every later welcome and every resume;
removing someone closes their sockets with 4003 and keeps them out; members may do neither.
(The same across two workers on Redis and PostgreSQL: tests/cluster/test_moderation.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chat import protocol, rooms
from chat.models import Message, Room, RoomMembership
from chat.realtime.presence import Presence
from chat.runtime import get_runtime
from config.asgi import application
from tests.conftest import Client, connect, wait_for
from tests.rooms.people import Person, person

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "the door code is 4711"


@database_sync_to_async
def _room(owner: Person, name: str, *, private: bool = False) -> Room:
    visibility = Room.Visibility.PRIVATE if private else Room.Visibility.PUBLIC
    return rooms.create_room(name, owner.identity, visibility=visibility)


@database_sync_to_async
def _add(room: Room, someone: Person, role: str = RoomMembership.Role.MEMBER) -> None:
    RoomMembership.objects.create(room=room, user=someone.user, role=role)


@database_sync_to_async
def _stored(message_id: str) -> tuple[str, bool]:
    row = Message.objects.get(id=message_id)
    return row.text, row.redacted


async def _team(private: bool = True) -> tuple[Person, Person, Person, Room]:
    owner, mod, member = await person("owner"), await person("mod"), await person("member")
    room = await _room(owner, "team", private=private)
    await _add(room, mod, RoomMembership.Role.MODERATOR)
    await _add(room, member)
    return owner, mod, member, room


async def _error(client: Client) -> dict[str, Any]:
    return (await client.recv_until(lambda f: f["type"] == "error"))[-1]


async def test_a_redacted_question_is_gone_from_the_room_the_database_and_every_resume(
    knowledge_base: str,
) -> None:
    owner, mod, member, _ = await _team()
    asker = await connect("team", headers=member.ws_headers)
    watcher = await connect("team", headers=owner.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    before = asker.welcome["seq"]
    events = await asker.answer(SECRET)
    question = events[0]
    assert question["type"] == "question" and question["text"] == SECRET

    await moderator.send({"type": "redact", "id": question["id"]})
    redacted = (await watcher.recv_until(lambda f: f["type"] == "message.redacted"))[-1]
    assert redacted["id"] == question["id"] and redacted["seq"] > events[-1]["seq"]
    assert await _stored(question["id"]) == ("", True)

    fresh = await connect("team", headers=owner.ws_headers)
    item = next(m for m in fresh.welcome["history"] if m["id"] == question["id"])
    assert item["text"] == "" and item["redacted"] is True
    assert SECRET not in json.dumps(fresh.welcome)

    resumed = await connect("team", headers=owner.ws_headers, query=f"after={before}")
    assert resumed.welcome["resumed"] is True
    replay = await resumed.recv_until(lambda f: f["type"] == "message.redacted")
    assert replay[0]["type"] == "question" and replay[0]["redacted"] is True
    assert SECRET not in json.dumps(replay)
    # The answer stays: only what was redacted goes.
    assert any(f["type"] == "answer.end" and f["text"] for f in replay)
    for client in (asker, watcher, moderator, fresh, resumed):
        await client.close()


async def test_redacting_an_answer_being_written_stops_it_and_keeps_none_of_its_text(
    llm: Any, knowledge_base: str
) -> None:
    llm.configure(tps=20)  # slow: the redaction comes while it is being written
    owner, mod, member, _ = await _team()
    asker = await connect("team", headers=member.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    await asker.send({"type": "ask", "text": "라떼 가격은?"})
    frames = await asker.recv_until(lambda f: f["type"] == "answer.delta")
    answer_id = frames[-1]["answer_id"]
    await moderator.send({"type": "redact", "id": answer_id})
    rest = await asker.recv_until(lambda f: f["type"] == "answer.end")
    end = rest[-1]
    assert end["status"] == "cancelled" and end["text"] == "" and end["redacted"] is True
    assert not [f for f in rest if f["type"] == "answer.delta" and f["seq"] > end["seq"]]
    assert await _stored(answer_id) == ("", True)
    fresh = await connect("team", headers=owner.ws_headers)
    item = next(m for m in fresh.welcome["history"] if m["id"] == answer_id)
    assert (item["text"], item["status"], item["redacted"]) == ("", "cancelled", True)
    for client in (asker, moderator, fresh):
        await client.close()


async def test_a_redacted_answer_s_search_query_is_gone_from_every_resume(
    llm: Any, knowledge_base: str
) -> None:
    """A follow-up's `answer.sources` carries `query`, the question rewritten for the search (it
    keeps the question's names and numbers): redacting the answer takes it out too."""
    owner, mod, member, _ = await _team()
    asker = await connect("team", headers=member.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    await asker.answer("What desserts do you have?")
    before = await asker.answer("And which of them has no nuts?")
    sources = next(f for f in before if f["type"] == "answer.sources")
    assert sources["query"]  # rewritten: the simulator's reply to the rewrite prompt
    await moderator.send({"type": "redact", "id": sources["answer_id"]})
    await asker.recv_until(lambda f: f["type"] == "message.redacted")
    resumed = await connect("team", headers=owner.ws_headers, query=f"after={before[0]['seq']}")
    replay = await resumed.recv_until(lambda f: f["type"] == "message.redacted")
    replayed = next(f for f in replay if f["type"] == "answer.sources")
    assert replayed == {key: value for key, value in sources.items() if key != "query"}
    response = await owner.http.get(f"/api/rooms/team/events?after={before[0]['seq']}")
    chunks = aiter(response.streaming_content)  # type: ignore[arg-type]
    streamed = b""
    while b"message.redacted" not in streamed:
        streamed += await anext(chunks)
    assert b'"answer.sources"' in streamed and b'"query"' not in streamed
    await chunks.aclose()  # type: ignore[attr-defined]
    for client in (asker, moderator, resumed):
        await client.close()


async def test_a_redacted_question_s_search_query_is_gone_and_its_answer_stays(
    llm: Any, knowledge_base: str
) -> None:
    """The query an answer's sources carry is its question rewritten for the search: redacting
    the question takes it out of every resume; the answer itself stays."""
    owner, mod, member, _ = await _team()
    asker = await connect("team", headers=member.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    await asker.answer("What desserts do you have?")
    before = await asker.answer("And which of them has no nuts?")
    question = before[0]
    sources = next(f for f in before if f["type"] == "answer.sources")
    assert sources["query"] and sources["question_id"] == question["id"]
    await moderator.send({"type": "redact", "id": question["id"]})
    await asker.recv_until(lambda f: f["type"] == "message.redacted")
    resumed = await connect("team", headers=owner.ws_headers, query=f"after={question['seq'] - 1}")
    replay = await resumed.recv_until(lambda f: f["type"] == "message.redacted")
    replayed = next(f for f in replay if f["type"] == "answer.sources")
    assert replayed == {key: value for key, value in sources.items() if key != "query"}
    assert next(f for f in replay if f["type"] == "answer.end")["text"] == before[-1]["text"]
    for client in (asker, moderator, resumed):
        await client.close()


async def test_redact_refusals_are_clear_and_the_socket_lives_on(knowledge_base: str) -> None:
    _, mod, member, _ = await _team()
    author = await connect("team", headers=member.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    events = await author.answer("hello")
    delta = next(f for f in events if f["type"] == "answer.delta")
    # A member (even the author) does not moderate.
    await author.send({"type": "redact", "id": events[0]["id"]})
    assert (await _error(author))["code"] == "forbidden"
    # A seq that is not a message's (a delta's), an id that is not in this room.
    await moderator.send({"type": "redact", "seq": delta["seq"]})
    assert (await _error(moderator))["code"] == "not_found"
    await moderator.send({"type": "redact", "id": "q_not_here"})
    assert (await _error(moderator))["code"] == "not_found"
    for bad in ({}, {"id": "q_1", "seq": 3}, {"seq": True}, {"seq": 0}, {"id": ""}):
        await moderator.send({"type": "redact", **bad})
        assert (await _error(moderator))["code"] == "invalid", bad
    # By seq: the question's own event.
    await moderator.send({"type": "redact", "seq": events[0]["seq"]})
    done = (await moderator.recv_until(lambda f: f["type"] == "message.redacted"))[-1]
    assert done["id"] == events[0]["id"]
    await moderator.send({"type": "ping"})
    assert (await moderator.recv_until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    for client in (author, moderator):
        await client.close()


async def _closed_with(client: Client) -> int:
    while True:
        output = await client.ws.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return int(output["code"])


async def _handshake(room: str, someone: Person) -> bool:
    communicator = WebsocketCommunicator(
        application, f"/ws/rooms/{room}/", headers=someone.ws_headers
    )
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


@pytest.mark.parametrize("private", [True, False])
async def test_a_removed_member_is_closed_4003_and_cannot_come_back(private: bool) -> None:
    owner, mod, member, _ = await _team(private=private)
    first = await connect("team", headers=member.ws_headers)
    second = await connect("team", headers=member.ws_headers)
    bystander = await connect("team", headers=owner.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    await moderator.send({"type": "remove", "user_id": member.identity.id})
    assert await _closed_with(first) == protocol.CLOSE_REMOVED
    assert await _closed_with(second) == protocol.CLOSE_REMOVED
    assert await _handshake("team", member) is False
    page = await member.http.get("/rooms/team/")
    assert page.status_code == 404
    # Everyone else stays.
    await bystander.send({"type": "ping"})
    assert (await bystander.recv_until(lambda f: f["type"] == "pong"))[-1]["type"] == "pong"
    for client in (bystander, moderator):
        await client.close()


@pytest.mark.parametrize("change", ["removed", "made private"])
async def test_a_change_that_overtakes_the_handshake_still_closes_it(
    monkeypatch: Any, change: str
) -> None:
    """The race a removal (or a room made private) can win: the person's access is read, then
    it changes while this worker is still joining the room's channel-layer group (their
    connection is the first here), so the order told to the group cannot reach this worker.
    The join reads the access again once it is in the group, and closes them with 4003."""
    _, mod, member, room_row = await _team(private=False)
    if change == "made private":
        member = await person("outsider")
    runtime = await get_runtime()
    joined_group = Presence._add_group

    async def changed_meanwhile(self: Presence, room: str) -> None:
        if change == "removed":
            await runtime.moderation.remove(room, mod.identity, member.identity.id)
        else:
            room_row.visibility = Room.Visibility.PRIVATE
            await database_sync_to_async(room_row.save)()
            await runtime.moderation.access_changed(room)
        await joined_group(self, room)

    monkeypatch.setattr(Presence, "_add_group", changed_meanwhile)
    communicator = WebsocketCommunicator(application, "/ws/rooms/team/", headers=member.ws_headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected  # admitted: the removal came after its access check
    client = Client(communicator)
    assert await _closed_with(client) == protocol.CLOSE_REMOVED
    assert await _handshake("team", member) is False


async def test_only_the_owner_removes_a_moderator_and_nobody_removes_the_owner() -> None:
    owner, mod, member, room = await _team()
    other_mod = await person("other-mod")
    await _add(room, other_mod, RoomMembership.Role.MODERATOR)
    by_member = await connect("team", headers=member.ws_headers)
    by_mod = await connect("team", headers=mod.ws_headers)
    await by_member.send({"type": "remove", "user_id": mod.identity.id})
    assert (await _error(by_member))["code"] == "forbidden"
    await by_mod.send({"type": "remove", "user_id": other_mod.identity.id})
    assert (await _error(by_mod))["code"] == "forbidden"
    await by_mod.send({"type": "remove", "user_id": owner.identity.id})
    assert (await _error(by_mod))["code"] == "forbidden"
    await by_mod.send({"type": "remove", "user_id": "u:999999"})
    assert (await _error(by_mod))["code"] == "not_found"
    await by_mod.send({"type": "remove", "user_id": "someone"})
    assert (await _error(by_mod))["code"] == "invalid"
    by_owner = await connect("team", headers=owner.ws_headers)
    await by_owner.send({"type": "remove", "user_id": mod.identity.id})
    assert await _closed_with(by_mod) == protocol.CLOSE_REMOVED
    for client in (by_member, by_owner):
        await client.close()


async def test_moderation_over_http_matches_the_websocket(knowledge_base: str) -> None:
    _, mod, member, _ = await _team()
    asker = await connect("team", headers=member.ws_headers)
    events = await asker.answer(SECRET)
    question_id = events[0]["id"]
    csrf = await _csrf(mod.http)
    refused = await member.http.post(
        f"/api/rooms/team/messages/{question_id}/redact", headers={"X-CSRFToken": csrf}
    )
    assert refused.status_code == 403  # the member's CSRF token is not even theirs
    reply = await mod.http.post(
        f"/api/rooms/team/messages/{question_id}/redact", headers={"X-CSRFToken": csrf}
    )
    assert reply.status_code == 200, reply.content
    assert reply.json() == {"id": question_id, "redacted": True}
    assert await _stored(question_id) == ("", True)
    outsider = await person("outsider")
    hidden = await outsider.http.post(
        f"/api/rooms/team/messages/{question_id}/redact",
        headers={"X-CSRFToken": await _csrf(outsider.http)},
    )
    assert hidden.status_code == 404
    removed = await mod.http.post(
        f"/api/rooms/team/members/{member.identity.id}/remove", headers={"X-CSRFToken": csrf}
    )
    assert removed.status_code == 200
    assert await _closed_with(asker) == protocol.CLOSE_REMOVED
    assert (await AsyncClient().get("/api/rooms/team/events")).status_code == 404


async def _csrf(client: AsyncClient) -> str:
    """A signed-in client's CSRF token, as the page's script gets it (the cookie)."""
    await client.get("/")
    return str(client.cookies["csrftoken"].value)


async def test_the_welcome_says_what_you_may_do() -> None:
    owner, mod, member, _ = await _team()
    seen = {}
    for someone in (owner, mod, member):
        client = await connect("team", headers=someone.ws_headers)
        seen[someone.user.username] = client.welcome["access"]
        await client.close()
    assert seen == {
        "owner": {"role": "owner", "moderate": True, "configure": True},
        "mod": {"role": "moderator", "moderate": True, "configure": False},
        "member": {"role": "member", "moderate": False, "configure": False},
    }


async def test_roles_change_at_once_and_the_person_reconnects_with_their_new_rights() -> None:
    owner, mod, member, _ = await _team()
    by_mod = await connect("team", headers=mod.ws_headers)
    await by_mod.send({"type": "set_role", "user_id": member.identity.id, "role": "moderator"})
    assert (await _error(by_mod))["code"] == "forbidden"  # the owner names moderators
    await by_mod.send({"type": "set_role", "user_id": member.identity.id, "role": "owner"})
    assert (await _error(by_mod))["code"] == "invalid"
    promoted = await connect("team", headers=member.ws_headers)
    by_owner = await connect("team", headers=owner.ws_headers)
    await by_owner.send({"type": "set_role", "user_id": member.identity.id, "role": "moderator"})
    assert await _closed_with(promoted) == protocol.CLOSE_REMOVED
    again = await connect("team", headers=member.ws_headers)
    assert again.welcome["access"]["role"] == "moderator"
    # Demoted: closed at once, and back as a member who may no longer moderate.
    await by_owner.send({"type": "set_role", "user_id": mod.identity.id, "role": "member"})
    assert await _closed_with(by_mod) == protocol.CLOSE_REMOVED
    demoted = await connect("team", headers=mod.ws_headers)
    assert demoted.welcome["access"] == {"role": "member", "moderate": False, "configure": False}
    await demoted.send({"type": "remove", "user_id": member.identity.id})
    assert (await _error(demoted))["code"] == "forbidden"
    # A moderator re-admits someone removed.
    await again.send({"type": "remove", "user_id": mod.identity.id})
    assert await _closed_with(demoted) == protocol.CLOSE_REMOVED
    assert await _handshake("team", mod) is False
    await again.send({"type": "set_role", "user_id": mod.identity.id, "role": "member"})
    await wait_for(lambda: _handshake("team", mod))
    for client in (again, by_owner):
        await client.close()


async def test_staff_moderate_and_configure_a_private_room_they_are_not_in(
    llm: Any, knowledge_base: str
) -> None:
    """Staff (`is_staff`) may do all the owner may, in every room, without a role in it: stop
    anyone's answer, redact, name moderators, remove a moderator, change the settings."""
    llm.configure(tps=20)  # slow enough to stop
    _, mod, member, _ = await _team()
    staff = await person("root", staff=True)
    by_staff = await connect("team", headers=staff.ws_headers)
    assert by_staff.welcome["access"] == {"role": None, "moderate": True, "configure": True}
    author = await connect("team", headers=member.ws_headers)
    await author.send({"type": "ask", "text": "라떼 가격은?"})
    start = (await author.recv_until(lambda f: f["type"] == "answer.start"))[-1]
    await by_staff.send({"type": "cancel", "answer_id": start["id"]})
    end = (await author.recv_until(lambda f: f["type"] == "answer.end"))[-1]
    assert end["status"] == "cancelled"
    await author.send({"type": "say", "text": SECRET})
    said = (await author.recv_until(lambda f: f["type"] == "message"))[-1]
    await by_staff.send({"type": "redact", "id": said["id"]})
    assert (await author.recv_until(lambda f: f["type"] == "message.redacted"))[-1]["id"] == (
        said["id"]
    )
    assert await _stored(said["id"]) == ("", True)
    await by_staff.send({"type": "set_role", "user_id": member.identity.id, "role": "moderator"})
    assert await _closed_with(author) == protocol.CLOSE_REMOVED
    moderator = await connect("team", headers=mod.ws_headers)
    await by_staff.send({"type": "remove", "user_id": mod.identity.id})
    assert await _closed_with(moderator) == protocol.CLOSE_REMOVED
    assert await _handshake("team", mod) is False
    changed = await staff.http.patch(
        "/api/rooms/team", {"title": "Staff's"}, content_type="application/json"
    )
    assert changed.status_code == 200, changed.content
    assert (await by_staff.recv_until(lambda f: f["type"] == "room.updated"))[-1]["room"][
        "title"
    ] == "Staff's"
    promoted = await connect("team", headers=member.ws_headers)
    assert promoted.welcome["access"]["role"] == "moderator"
    for client in (by_staff, promoted):
        await client.close()


async def test_a_room_made_private_closes_everyone_who_may_no_longer_enter() -> None:
    _, _, member, room = await _team(private=False)
    outsider = await person("outsider")
    guest = await connect("team")
    stranger = await connect("team", headers=outsider.ws_headers)
    insider = await connect("team", headers=member.ws_headers)
    room.visibility = Room.Visibility.PRIVATE
    await database_sync_to_async(room.save)()
    runtime = await get_runtime()
    await runtime.moderation.access_changed("team")
    assert await _closed_with(guest) == protocol.CLOSE_REMOVED
    assert await _closed_with(stranger) == protocol.CLOSE_REMOVED
    await insider.send({"type": "ping"})
    assert (await insider.recv_until(lambda f: f["type"] == "pong"))[-1]["type"] == "pong"
    await insider.close()


async def test_a_said_message_is_redacted_like_a_question() -> None:
    owner, mod, member, _ = await _team()
    author = await connect("team", headers=member.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    await author.send({"type": "say", "text": SECRET})
    said = (await author.recv_until(lambda f: f["type"] == "message"))[-1]
    await moderator.send({"type": "redact", "seq": said["seq"]})
    seen = (await author.recv_until(lambda f: f["type"] == "message.redacted"))[-1]
    assert seen["id"] == said["id"]
    assert await _stored(said["id"]) == ("", True)
    fresh = await connect("team", headers=owner.ws_headers)
    item = next(m for m in fresh.welcome["history"] if m["id"] == said["id"])
    assert (item["role"], item["text"], item["redacted"]) == ("message", "", True)
    resumed = await connect("team", headers=owner.ws_headers, query=f"after={said['seq'] - 1}")
    replay = await resumed.recv_until(lambda f: f["type"] == "message.redacted")
    assert replay[0] == {**said, "text": "", "redacted": True}
    for client in (author, moderator, fresh, resumed):
        await client.close()


async def test_a_removed_guest_is_kept_out_by_their_session() -> None:
    _, mod, _, _ = await _team(private=False)
    browser = AsyncClient()
    assert (await browser.get("/rooms/team/")).status_code == 200  # the session's guest
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", b"http://testserver"), (b"host", b"testserver")]
    guest = await connect("team", headers=headers)
    moderator = await connect("team", headers=mod.ws_headers)
    await moderator.send({"type": "remove", "user_id": guest.welcome["user"]["id"]})
    assert await _closed_with(guest) == protocol.CLOSE_REMOVED
    communicator = WebsocketCommunicator(application, "/ws/rooms/team/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    assert (await browser.get("/rooms/team/")).status_code == 404
    # Another guest (another browser) still gets in: only turning guests off stops that.
    other = await connect("team")
    await other.close()
    await moderator.close()


async def test_the_owner_making_the_room_private_closes_who_may_no_longer_enter() -> None:
    """Through the settings' own path (PATCH /api/rooms/<room>), not the moderation call."""
    owner, _, member, _ = await _team(private=False)
    outsider = await person("outsider")
    guest = await connect("team")
    stranger = await connect("team", headers=outsider.ws_headers)
    insider = await connect("team", headers=member.ws_headers)
    changed = await owner.http.patch(
        "/api/rooms/team", {"visibility": "private"}, content_type="application/json"
    )
    assert changed.status_code == 200, changed.content
    assert await _closed_with(guest) == protocol.CLOSE_REMOVED
    assert await _closed_with(stranger) == protocol.CLOSE_REMOVED
    updated = (await insider.recv_until(lambda f: f["type"] == "room.updated"))[-1]
    assert updated["room"]["visibility"] == "private"
    await insider.close()


async def test_the_member_list_shows_roles() -> None:
    owner, mod, member, _ = await _team(private=False)
    first = await connect("team", headers=owner.ws_headers)
    second = await connect("team", headers=mod.ws_headers)
    last = await connect("team", headers=member.ws_headers)
    roles = {m["name"]: m.get("role") for m in last.welcome["members"]}
    assert roles == {"owner": "owner", "mod": "moderator", "member": "member"}
    presence = (await first.recv_until(lambda f: f["type"] == "presence", skip_presence=False))[-1]
    assert {m.get("role") for m in presence["members"]} <= {"owner", "moderator", "member"}
    guest = await connect("team")
    assert "role" not in next(m for m in guest.welcome["members"] if m["id"].startswith("g:"))
    for client in (first, second, last, guest):
        await client.close()
