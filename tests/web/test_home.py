"""The home page of the rooms issue, through the real ASGI application (Django's AsyncClient):
the rooms I belong to, public rooms with their live member counts, and creating a room."""

from __future__ import annotations

import re
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat import rooms
from chat.models import Room, RoomMembership
from tests.conftest import connect
from tests.rooms.people import person

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


def listed(html: str, section: str) -> list[str]:
    """The room names linked in one section of the page (`my-rooms` or `recent`)."""
    match = re.search(rf'<section class="card {section}".*?</section>', html, re.S)
    assert match, f"no {section} section"
    return re.findall(r'href="/rooms/([^/"]+)/"', match.group(0))


async def test_public_rooms_show_how_many_people_are_in_them() -> None:
    owner = await person("owner")
    await db(rooms.create_room)("busy", owner.identity, title="Busy room")
    await db(rooms.create_room)("quiet", owner.identity)
    first = await connect("busy", headers=owner.ws_headers)
    second = await connect("busy")  # a guest: another person
    html = (await AsyncClient().get("/")).content.decode()
    assert set(listed(html, "recent")) == {"busy", "quiet"}
    counts = dict(re.findall(r'href="/rooms/([^/"]+)/".*?data-count="(\d+)"', html, re.S))
    assert counts == {"busy": "2", "quiet": "0"}
    assert "Busy room" in html
    # Anonymous visitors get neither "my rooms" nor the form to create one.
    assert 'class="card my-rooms"' not in html and 'id="create-room"' not in html
    await second.close()
    await first.close()


async def test_my_rooms_list_every_room_i_am_in_with_my_role_and_nobody_else_s() -> None:
    me, other = await person("me"), await person("other")
    await db(rooms.create_room)("mine", me.identity, visibility="private", title="My own")
    theirs = await db(rooms.create_room)("theirs", other.identity, visibility="private")
    moderated = await db(rooms.create_room)("moderated", other.identity)
    await db(rooms.create_room)("secret", other.identity, visibility="private")
    await db(RoomMembership.objects.create)(room=theirs, user=me.user)
    await db(RoomMembership.objects.create)(room=moderated, user=me.user, role="moderator")
    html = (await me.http.get("/")).content.decode()
    assert sorted(listed(html, "my-rooms")) == ["mine", "moderated", "theirs"]
    roles = dict(re.findall(r'href="/rooms/([^/"]+)/".*?data-role="(\w+)"', html, re.S))
    assert roles == {"mine": "owner", "theirs": "member", "moderated": "moderator"}
    # Public rooms: the private ones never, not even mine (they are in my list).
    assert sorted(listed(html, "recent")) == ["moderated"]
    assert "secret" not in html
    assert "secret" not in (await AsyncClient().get("/")).content.decode()


async def test_creating_a_room_makes_me_its_owner() -> None:
    me = await person("me")
    response = await me.http.post(
        "/create-room/", {"name": "team", "title": "Our team", "visibility": "private"}
    )
    assert (response.status_code, response["Location"]) == (302, "/rooms/team/")
    room = await db(Room.objects.get)(name="team")
    assert (room.owner_id, room.visibility, room.title) == (me.user.pk, "private", "Our team")
    # A title is one line of at most 100 characters (a NUL, which no column holds, goes).
    await me.http.post("/create-room/", {"name": "long", "title": "  a\x00b\n" + "x" * 200})
    assert (await db(Room.objects.get)(name="long")).title == ("ab " + "x" * 200)[:100]
    # Without a title, the name is the title.
    await me.http.post("/create-room/", {"name": "plain", "visibility": "public"})
    assert (await db(Room.objects.get)(name="plain")).title == "plain"
    html = (await me.http.get("/")).content.decode()
    assert sorted(listed(html, "my-rooms")) == ["long", "plain", "team"]


async def test_a_bad_or_taken_name_shows_the_form_again_with_its_message() -> None:
    me, other = await person("me"), await person("other")
    await db(rooms.create_room)("hidden", other.identity, visibility="private")
    bad = await me.http.post("/create-room/", {"name": "no spaces", "title": "Nice"})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'id="create-error"' in html and 'data-i18n="home.createInvalid"' in html
    assert 'value="no spaces"' in html and 'value="Nice"' in html  # what was typed stays
    for name in ("hidden", "plain"):  # taken: private or public, the same answer
        if name == "plain":
            await db(rooms.create_room)("plain", other.identity)
        taken = await me.http.post("/create-room/", {"name": name, "visibility": "private"})
        assert taken.status_code == 409
        assert "That name is taken. Choose another." in taken.content.decode()
    assert await db(Room.objects.filter(owner=me.user).count)() == 0


async def test_guests_and_anonymous_visitors_cannot_create_rooms(settings: Any) -> None:
    guest = AsyncClient()
    await guest.get("/rooms/lobby/")  # becomes the session's guest
    for client in (guest, AsyncClient()):
        response = await client.post("/create-room/", {"name": "mine"})
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert not await db(Room.objects.filter(name="mine").exists)()
    assert (await guest.get("/create-room/")).status_code == 405
