"""Invite links (the rooms issue), through the real ASGI application: the owner or a moderator
makes one from the room page; a signed-in person opens it and joins; an expired, used-up,
changed or deleted invite gets a clear page; guests never join; a use limit holds when people
accept at once."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import AsyncClient
from django.utils import timezone

from chat import rooms
from chat.models import Invite, Room, RoomMembership
from chat.protocol import ProtocolError
from chat.rooms import invites
from tests.conftest import connect
from tests.rooms.people import Person, person

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
JSON = {"headers": {"Accept": "application/json"}}


async def _private(owner: Person, name: str = "team") -> Room:
    return await db(rooms.create_room)(name, owner.identity, visibility="private")


async def _invite(client: AsyncClient, room: str = "team", **choices: Any) -> Any:
    return await client.post(f"/rooms/{room}/invites/", choices, **JSON)


async def _path(owner: Person, room: str = "team", **choices: Any) -> str:
    made = await _invite(owner.http, room, **choices)
    assert made.status_code == 201, made.content
    return str(made.json()["url"]).removeprefix("http://testserver")


@database_sync_to_async
def _members(room: str) -> set[str]:
    return set(
        RoomMembership.objects.filter(room__name=room).values_list("user__username", flat=True)
    )


async def test_a_signed_in_person_opens_an_invite_joins_and_enters() -> None:
    owner, newcomer = await person("owner"), await person("newcomer")
    await _private(owner)
    made = await _invite(owner.http, expires="7d", max_uses="5")
    assert made.status_code == 201
    body = made.json()
    assert body["max_uses"] == 5 and body["url"].startswith("http://testserver/invites/")
    path = body["url"].removeprefix("http://testserver")
    # Before: the room is a 404 to the newcomer, like any room they are not in.
    assert (await newcomer.http.get("/rooms/team/")).status_code == 404
    page = await newcomer.http.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Join the room" in html and "#</span>team" in html and "Invited by owner" in html
    joined = await newcomer.http.post(path)
    assert (joined.status_code, joined["Location"]) == (302, "/rooms/team/")
    assert await _members("team") == {"newcomer"}
    assert (await newcomer.http.get("/rooms/team/")).status_code == 200
    client = await connect("team", headers=newcomer.ws_headers)
    assert client.welcome["room"] == "team"
    await client.close()
    # Opening it again: "already in", and no use is counted for it.
    again = await newcomer.http.get(path)
    assert "You are already in this room." in again.content.decode()
    assert (await newcomer.http.post(path))["Location"] == "/rooms/team/"
    assert (await db(Invite.objects.get)()).uses == 1


async def test_the_form_without_script_shows_a_page_with_the_link() -> None:
    owner = await person("owner")
    await _private(owner)
    page = await owner.http.post("/rooms/team/invites/", {"expires": "1h", "max_uses": "1"})
    assert page.status_code == 201
    html = page.content.decode()
    assert 'id="invite-url"' in html and "http://testserver/invites/" in html
    invite = await db(Invite.objects.get)()
    left = invite.expires - timezone.now()
    assert timedelta(minutes=59) < left <= timedelta(hours=1) and invite.max_uses == 1


async def test_only_the_owner_moderators_and_staff_make_invites() -> None:
    owner, mod, member, outsider, staff = (
        await person("owner"),
        await person("mod"),
        await person("member"),
        await person("outsider"),
        await person("staff", staff=True),
    )
    room = await _private(owner)
    await db(RoomMembership.objects.create)(room=room, user=mod.user, role="moderator")
    await db(RoomMembership.objects.create)(room=room, user=member.user)
    for someone in (owner, mod, staff):
        assert (await _invite(someone.http)).status_code == 201
    refused = await _invite(member.http)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
    assert (await member.http.post("/rooms/team/invites/", {})).status_code == 403
    for client in (outsider.http, AsyncClient()):
        assert (await _invite(client)).status_code == 404  # the private room is not shown
    bad = await _invite(owner.http, expires="forever", max_uses="3")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid")
    assert (await owner.http.get("/rooms/team/invites/")).status_code == 405
    assert await db(Invite.objects.count)() == 3
    # The room page offers the invite panel to those who may use it, and only to them.
    assert 'id="invite-panel"' in (await mod.http.get("/rooms/team/")).content.decode()
    assert 'id="invite-panel"' not in (await member.http.get("/rooms/team/")).content.decode()


async def test_an_expired_invite_gets_a_clear_page_and_admits_nobody() -> None:
    owner, late = await person("owner"), await person("late")
    await _private(owner)
    path = await _path(owner)
    await db(Invite.objects.update)(expires=timezone.now() - timedelta(seconds=1))
    for response in (await late.http.get(path), await late.http.post(path)):
        assert response.status_code == 410
        html = response.content.decode()
        assert 'data-i18n="invite.expired"' in html and "This invite has expired." in html
    assert await _members("team") == set()


async def test_a_used_up_invite_gets_a_clear_page_and_admits_nobody_else() -> None:
    owner, first, second = await person("owner"), await person("first"), await person("second")
    await _private(owner)
    path = await _path(owner, max_uses="1")
    assert (await first.http.post(path))["Location"] == "/rooms/team/"
    for response in (await second.http.get(path), await second.http.post(path)):
        assert response.status_code == 410
        html = response.content.decode()
        assert 'data-i18n="invite.usedUp"' in html
        assert "This invite has been used as many times as it allows." in html
    assert await _members("team") == {"first"}
    assert (await second.http.get("/rooms/team/")).status_code == 404
    assert (await db(Invite.objects.get)()).uses == 1


async def test_a_changed_or_deleted_invite_is_a_404_page() -> None:
    owner, someone = await person("owner"), await person("someone")
    await _private(owner)
    path = await _path(owner)
    token = path.split("/")[2]
    forged = invites.token_for(Invite(pk=12345))  # a real signature for a row that is not there
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (f"/invites/{changed}/", f"/invites/{forged}/", "/invites/nonsense/"):
        response = await someone.http.post(bad)
        assert response.status_code == 404
        assert 'data-i18n="invite.gone"' in response.content.decode()
    await db(Invite.objects.all().delete)()
    assert (await someone.http.get(path)).status_code == 404
    assert await _members("team") == set()


async def test_guests_cannot_accept_and_visitors_are_sent_to_log_in_then_back() -> None:
    owner = await person("owner")
    await _private(owner)
    path = await _path(owner)
    visitor = AsyncClient()
    response = await visitor.get(path)
    assert response.status_code == 302
    assert unquote(response["Location"]) == f"/accounts/login/?next={path}"
    login = (await visitor.get(response["Location"])).content.decode()
    assert "Continue as guest" not in login  # an invite is for signed-in people
    guest = AsyncClient()
    await guest.get("/rooms/lobby/")  # the session's guest
    refused = await guest.post(path)
    assert refused.status_code == 403
    assert 'data-i18n="invite.signIn"' in refused.content.decode()
    assert (await db(Invite.objects.get)()).uses == 0
    with pytest.raises(ProtocolError) as caught:
        await db(invites.accept)(path.split("/")[2], guest_identity())
    assert caught.value.code == "forbidden"


def guest_identity() -> Any:
    from chat.identity import new_guest

    return new_guest()


async def test_the_use_limit_holds_when_two_people_accept_at_once() -> None:
    owner, first, second = await person("owner"), await person("first"), await person("second")
    await _private(owner)
    token = (await _path(owner, max_uses="1")).split("/")[2]
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def accept(someone: Person) -> None:
        barrier.wait()
        try:
            invites.accept(token, someone.identity)
            outcomes[someone.user.username] = "joined"
        except invites.InviteUnusable as err:
            outcomes[someone.user.username] = err.state
        finally:
            connection.close()

    threads = [threading.Thread(target=accept, args=(who,)) for who in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes.values()) == ["joined", "used_up"]
    assert len(await _members("team")) == 1
    assert (await db(Invite.objects.get)()).uses == 1
