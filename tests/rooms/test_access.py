"""Who gets in (the rooms issue), through the real ASGI application: a private room admits its
owner, members and staff, and shows an outsider nothing on any transport; a public room can
keep guests out; moderators may stop any answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chat import rooms
from chat.identity import new_guest
from chat.models import ApiToken, Message, Room, RoomMembership
from config.asgi import application
from tests.conftest import connect
from tests.rooms.people import SITE, Person, person

pytestmark = pytest.mark.django_db(transaction=True)


async def _handshake(room: str, headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, f"/ws/rooms/{room}/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


@database_sync_to_async
def _private_room(owner: Person, name: str = "team") -> Room:
    return rooms.create_room(name, owner.identity, visibility=Room.Visibility.PRIVATE)


@database_sync_to_async
def _add(room: Room, someone: Person, role: str = RoomMembership.Role.MEMBER) -> None:
    RoomMembership.objects.create(room=room, user=someone.user, role=role)


async def test_a_private_room_admits_owner_members_and_staff_over_websocket() -> None:
    owner, member, staff = (
        await person("owner"),
        await person("member"),
        await person("root", staff=True),
    )
    room = await _private_room(owner)
    await _add(room, member)
    for someone in (owner, member, staff):
        client = await connect("team", headers=someone.ws_headers)
        assert client.welcome["room"] == "team"
        await client.close()


async def test_an_outsider_is_refused_before_accept_and_gets_no_welcome() -> None:
    owner, outsider = await person("owner"), await person("outsider")
    await _private_room(owner)
    assert await _handshake("team", outsider.ws_headers) is False
    # A guest (no session: a program), and a browser guest: refused as well.
    assert await _handshake("team", []) is False
    assert await _handshake("team", SITE) is False
    # The same people get into a public room: it is the room that refuses them.
    assert await _handshake("open", outsider.ws_headers) is True
    assert await _handshake("open", []) is True


async def test_an_outsider_gets_404s_over_http_and_nothing_is_stored() -> None:
    owner, outsider = await person("owner"), await person("outsider")
    await _private_room(owner)
    guest = AsyncClient()
    for client in (outsider.http, guest):
        page = await client.get("/rooms/team/")
        assert page.status_code == 404
        events = await client.get("/api/rooms/team/events")
        assert events.status_code == 404
        assert events.json()["error"]["code"] == "not_found"
        post = await client.post(
            "/api/rooms/team/questions", {"text": "what is secret?"}, "application/json"
        )
        assert post.status_code == 404
        assert post.json()["error"]["code"] == "not_found"
        # The same answer as for a room that does not exist: the name is not confirmed.
        assert (
            post.json()
            == (
                await client.post(
                    "/api/rooms/team/answers/a_nothing/cancel", content_type="application/json"
                )
            ).json()
        )
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_the_page_opens_for_a_member_and_the_home_page_never_lists_a_private_room() -> None:
    owner, member, outsider = await person("owner"), await person("member"), await person("out")
    room = await _private_room(owner, "secret-team")
    await _add(room, member)
    assert (await member.http.get("/rooms/secret-team/")).status_code == 200
    assert (await owner.http.get("/rooms/secret-team/")).status_code == 200
    await database_sync_to_async(Room.objects.create)(name="open-cafe")
    for client in (outsider.http, AsyncClient()):
        home = (await client.get("/")).content.decode()
        assert "open-cafe" in home
        assert "secret-team" not in home


async def test_a_public_room_can_keep_guests_out(settings: Any) -> None:
    owner, someone = await person("owner"), await person("someone")
    room = await database_sync_to_async(rooms.create_room)("members-only", owner.identity)
    room.allow_guests = False
    await database_sync_to_async(room.save)()
    assert await _handshake("members-only", []) is False
    assert await _handshake("members-only", someone.ws_headers) is True
    guest = AsyncClient()
    assert (await guest.get("/rooms/members-only/")).status_code == 404


@database_sync_to_async
def _access(name: str, someone: Person) -> rooms.Access:
    return rooms.access(name, someone.identity)


async def test_roles_decide_moderation_and_settings() -> None:
    owner, mod, member, outsider, staff = (
        await person("owner"),
        await person("mod"),
        await person("member"),
        await person("outsider"),
        await person("staff", staff=True),
    )
    room = await _private_room(owner)
    await _add(room, mod, RoomMembership.Role.MODERATOR)
    await _add(room, member)
    seen = {
        who.user.username: (a.role, a.may_enter, a.may_moderate, a.may_configure)
        for who in (owner, mod, member, outsider, staff)
        for a in [await _access("team", who)]
    }
    assert seen == {
        "owner": ("owner", True, True, True),
        "mod": ("moderator", True, True, False),
        "member": ("member", True, False, False),
        "outsider": (None, False, False, False),
        "staff": (None, True, True, True),
    }


async def test_a_moderator_may_stop_anyone_s_answer_and_a_member_may_not(
    settings: Any, llm: Any, knowledge_base: str
) -> None:
    llm.tps = 20  # slow enough to stop
    owner, mod, member = await person("owner"), await person("mod"), await person("member")
    room = await _private_room(owner)
    await _add(room, mod, RoomMembership.Role.MODERATOR)
    await _add(room, member)
    asker = await connect("team", headers=owner.ws_headers)
    other = await connect("team", headers=member.ws_headers)
    moderator = await connect("team", headers=mod.ws_headers)
    await asker.send({"type": "ask", "text": "라떼 가격은?"})
    start = (await asker.recv_until(lambda f: f["type"] == "answer.start"))[-1]
    await other.send({"type": "cancel", "answer_id": start["id"]})
    error = (await other.recv_until(lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "forbidden"
    await moderator.send({"type": "cancel", "answer_id": start["id"]})
    end = (await asker.recv_until(lambda f: f["type"] == "answer.end"))[-1]
    assert end["status"] == "cancelled"
    for client in (asker, other, moderator):
        await client.close()


async def test_api_tokens_carry_their_user_s_rights() -> None:
    owner, member, outsider = await person("owner"), await person("member"), await person("out")
    room = await _private_room(owner)
    await _add(room, member)

    @database_sync_to_async
    def key(someone: Person) -> str:
        return ApiToken.issue(someone.user, name="test")[1]

    program = AsyncClient()
    for someone, status in ((member, 202), (outsider, 404)):
        headers = {"Authorization": f"Bearer {await key(someone)}"}
        posted = await program.post(
            "/api/rooms/team/questions",
            {"text": "hello"},
            "application/json",
            headers=headers,
        )
        assert posted.status_code == status, posted.content
    events = await program.get(
        "/api/rooms/team/events", headers={"Authorization": f"Bearer {await key(outsider)}"}
    )
    assert events.status_code == 404


async def test_the_batched_rule_judges_each_person_as_the_rule_does_one_at_a_time() -> None:
    """`access_and_rooms` (one batch for a burst of connects) gives every (room, person) the
    verdict `access_and_room` gives it alone: owners, moderators, members, removed people and
    guests, staff, private and guest-less rooms, rooms without a row, bad names."""
    owner, mod, member, removed, outsider, staff = (
        await person("owner"),
        await person("mod"),
        await person("member"),
        await person("removed"),
        await person("outsider"),
        await person("staff", staff=True),
    )
    team = await _private_room(owner)
    await _add(team, mod, RoomMembership.Role.MODERATOR)
    await _add(team, member)
    cafe = await database_sync_to_async(rooms.create_room)("cafe", owner.identity)
    await _add(cafe, removed, RoomMembership.Role.REMOVED)
    guest, removed_guest = new_guest(), new_guest()
    await database_sync_to_async(RoomMembership.objects.create)(
        room=cafe, guest_id=removed_guest.id, role=RoomMembership.Role.REMOVED
    )
    closed = await database_sync_to_async(rooms.create_room)("no-guests", owner.identity)
    closed.allow_guests = False
    await database_sync_to_async(closed.save)()
    people = [p.identity for p in (owner, mod, member, removed, outsider, staff)]
    people += [guest, removed_guest]
    requests = [
        (name, someone)
        for name in ("team", "cafe", "no-guests", "no-row-yet", "bad name!")
        for someone in people
    ]

    @database_sync_to_async
    def both() -> tuple[list[Any], list[Any]]:
        batched = rooms.access_and_rooms(requests)
        alone = [rooms.access_and_room(name, someone) for name, someone in requests]
        return batched, alone

    batched, alone = await both()
    assert [(a, r.pk if r else None) for a, r in batched] == [
        (a, r.pk if r else None) for a, r in alone
    ]
    verdicts = {
        (name, who.name): a.may_enter for (name, who), (a, _) in zip(requests, batched, strict=True)
    }
    assert verdicts[("team", "member")] and not verdicts[("team", "outsider")]
    assert not verdicts[("cafe", "removed")] and verdicts[("cafe", "outsider")]
    assert not verdicts[("cafe", removed_guest.name)] and verdicts[("cafe", guest.name)]
    assert not verdicts[("no-guests", guest.name)] and verdicts[("no-row-yet", guest.name)]


async def test_a_burst_of_handshakes_is_judged_person_by_person() -> None:
    """Handshakes arriving together are checked together in batches: each gets its own verdict
    (members in, outsiders refused before accept), whatever the order they arrive in."""
    owner = await person("owner")
    room = await _private_room(owner)
    insiders = [await person(f"in{i}") for i in range(6)]
    outsiders = [await person(f"out{i}") for i in range(6)]
    for someone in insiders:
        await _add(room, someone)
    crowd = [p for pair in zip(insiders, outsiders, strict=True) for p in pair]
    communicators = [
        WebsocketCommunicator(application, "/ws/rooms/team/", headers=p.ws_headers) for p in crowd
    ]
    results = await asyncio.gather(*(c.connect(timeout=10) for c in communicators))
    admitted = {p.user.username for p, (ok, _) in zip(crowd, results, strict=True) if ok}
    assert admitted == {p.user.username for p in insiders}
    for communicator, (ok, _) in zip(communicators, results, strict=True):
        if ok:
            welcome = await communicator.receive_json_from(timeout=5)
            while welcome["type"] == "presence":
                welcome = await communicator.receive_json_from(timeout=5)
            assert welcome["type"] == "welcome" and welcome["access"]["role"] == "member"
            await communicator.disconnect()
