"""Rooms people own, on two workers sharing Redis and PostgreSQL: settings changed through
worker A's API apply to the next answer asked on worker B (the simulator's record says which
model, prompt and temperature it got) and its members hear of it; an invite's use limit holds
when two people accept at once on the two workers; worker B's home page counts the people
whose sockets are on worker A."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.cluster.clients import Member
from tests.cluster.conftest import ClusterFactory
from tests.cluster.harness import Cluster
from tests.servers import BIN, ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

# People (a signed-in session each, as a browser has after logging in, and an API key), made
# in the shared database by the project's own code.
_PEOPLE = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from chat.models import ApiToken
made = {}
for name in %r:
    user = User.objects.create_user(name, password="pw-123456789")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    made[name] = {"session": session.session_key, "key": ApiToken.issue(user)[1]}
print(json.dumps(made))
"""


def people(cluster: Cluster, *names: str) -> dict[str, dict[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    done = subprocess.run(
        [
            str(BIN / "python"),
            "manage.py",
            "shell",
            "-c",
            _PEOPLE % ([f"{n}-{suffix}" for n in names],),
        ],
        cwd=ROOT,
        env=cluster.env,
        check=True,
        capture_output=True,
        text=True,
    )
    made = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: {**made[f"{name}-{suffix}"], "username": f"{name}-{suffix}"} for name in names}


def manage(cluster: Cluster, *args: str) -> None:
    subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=cluster.env,
        check=True,
        capture_output=True,
    )


async def test_settings_changed_on_a_apply_to_the_next_answer_on_b(
    make_cluster: ClusterFactory, room: str, sim: Any
) -> None:
    cluster = make_cluster(workers=2, env={"CHAT_MODELS": "sim-small,sim-large"})
    who = people(cluster, "owner", "member")
    manage(cluster, "createroom", room, "--owner", who["owner"]["username"], "--private")
    manage(cluster, "shell", "-c", _ADD_MEMBER % (room, who["member"]["username"]))
    cookie = f"sessionid={who['member']['session']}"
    on_b = await Member.join(cluster.ws_url(1, room), cookie=cookie)
    assert on_b.welcome["room_info"]["model"] == ""
    owner = {"Authorization": f"Bearer {who['owner']['key']}"}
    async with httpx.AsyncClient(timeout=30) as http:
        changed = await http.patch(
            f"{cluster.url(0)}/api/rooms/{room}",
            json={
                "model": "sim-large",
                "system_prompt": "Answer in one short sentence.",
                "temperature": 0.3,
                "assistant_name": "bori",
            },
            headers=owner,
        )
        assert changed.status_code == 200, changed.text
        told = (await on_b.until(lambda f: f["type"] == "room.updated"))[-1]
        assert (told["room"]["model"], told["room"]["assistant_name"]) == ("sim-large", "bori")
        assert "system_prompt" not in told["room"]
        asked = await http.post(
            f"{cluster.url(1)}/api/rooms/{room}/questions",
            json={"text": "What does a latte cost? [[sim tokens=3]]"},
            headers=owner,
        )
        assert asked.status_code == 202, asked.text
        end = await on_b.until_end()
        assert end["status"] == "complete"
        record = next(r for r in reversed(sim.stats()) if "latte cost" in json.dumps(r.messages))
        assert (record.model, record.temperature) == ("sim-large", 0.3)
        system = record.messages[0]["content"]
        assert system.startswith("You are bori; people call you @bori.\n\nAnswer in one short")
        # And back to the server's defaults, changed on B, asked on A.
        await http.patch(
            f"{cluster.url(1)}/api/rooms/{room}",
            json={"model": "", "temperature": None, "system_prompt": ""},
            headers=owner,
        )
        await http.post(
            f"{cluster.url(0)}/api/rooms/{room}/questions",
            json={"text": "And a mocha? [[sim tokens=3]]"},
            headers=owner,
        )
        await on_b.until_end()
        record = next(r for r in reversed(sim.stats()) if "a mocha" in json.dumps(r.messages))
        assert (record.model, record.temperature) == ("gpt-4o-mini", None)
    # A fresh welcome, on either worker, carries the settings as they are.
    on_a = await Member.join(cluster.ws_url(0, room), cookie=cookie)
    assert (on_a.welcome["room_info"]["assistant_name"], on_a.welcome["room_info"]["model"]) == (
        "bori",
        "",
    )
    await asyncio.gather(on_a.close(), on_b.close())


_ADD_MEMBER = """
from django.contrib.auth.models import User
from chat.models import Room, RoomMembership
RoomMembership.objects.create(room=Room.objects.get(name=%r), user=User.objects.get(username=%r))
"""

_INVITE = """
from datetime import timedelta
from django.utils import timezone
from chat.models import Invite, Room
from chat.rooms.invites import token_for
invite = Invite.objects.create(
    room=Room.objects.get(name=%r), expires=timezone.now() + timedelta(hours=1), max_uses=1
)
print(token_for(invite))
"""


async def _ready_to_join(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """A signed-in browser on the invite's page (which gives it a CSRF token): the Join POST
    it would send."""
    page = await http.get(url)
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None
    return {"url": url, "data": {"csrfmiddlewaretoken": token.group(1)}}


def _new_invite(cluster: Cluster, room: str) -> str:
    done = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", _INVITE % (room,)],
        cwd=ROOT,
        env=cluster.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def _members_and_uses(database_url: str, room: str) -> tuple[Any, Any]:
    with psycopg.connect(database_url) as conn:
        members = conn.execute(
            "select count(*) from chat_roommembership m join chat_room r on r.id = m.room_id"
            " where r.name = %s",
            (room,),
        ).fetchone()
        uses = conn.execute("select uses from chat_invite order by id desc limit 1").fetchone()
        # Out again, for the next round.
        conn.execute(
            "delete from chat_roommembership where room_id = "
            "(select id from chat_room where name = %s)",
            (room,),
        )
    return members, uses


async def test_an_invite_s_use_limit_holds_when_two_people_accept_at_once_on_two_workers(
    make_cluster: ClusterFactory, room: str, database_url: str
) -> None:
    cluster = make_cluster(workers=2)
    who = people(cluster, "owner", "first", "second")
    manage(cluster, "createroom", room, "--owner", who["owner"]["username"], "--private")
    browsers = [
        httpx.AsyncClient(timeout=30, cookies={"sessionid": who[name]["session"]})
        for name in ("first", "second")
    ]
    try:
        for _ in range(3):  # a race is not run the same way twice: three fresh invites
            token = _new_invite(cluster, room)
            joins = [
                await _ready_to_join(browser, f"{cluster.url(index)}/invites/{token}/")
                for index, browser in enumerate(browsers)
            ]
            # Both Join presses at once, one on each worker.
            replies = await asyncio.gather(
                *(b.post(j["url"], data=j["data"]) for b, j in zip(browsers, joins, strict=True))
            )
            assert sorted(r.status_code for r in replies) == [302, 410]
            assert _members_and_uses(database_url, room) == ((1,), (1,))
    finally:
        for browser in browsers:
            await browser.aclose()


async def test_the_home_page_on_one_worker_counts_the_people_on_the_other(
    make_cluster: ClusterFactory, room: str
) -> None:
    """The home page's public rooms with their live member counts: the count is the shared
    presence in Redis, so worker B's home page counts the people whose sockets are on A."""
    cluster = make_cluster(workers=2)
    who = people(cluster, "owner")
    manage(cluster, "createroom", room, "--owner", who["owner"]["username"])
    guest = await Member.join(cluster.ws_url(0, room))
    owner = await Member.join(
        cluster.ws_url(0, room), cookie=f"sessionid={who['owner']['session']}"
    )
    async with httpx.AsyncClient(timeout=30) as http:
        html = (await http.get(f"{cluster.url(1)}/")).text
    entry = re.search(rf'href="/rooms/{room}/".*?data-count="(\d+)"', html, re.S)
    assert entry is not None, html
    assert entry.group(1) == "2"
    await asyncio.gather(guest.close(), owner.close())
