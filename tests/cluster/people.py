"""People with accounts for the cluster tests: their sessions live in the shared database, so
each is the same person on every worker."""

from __future__ import annotations

import json
import subprocess
import uuid

from tests.cluster.harness import Cluster
from tests.servers import BIN, ROOT

_PEOPLE = """
import json
from django.contrib.auth.models import User
from django.test import Client
from chat.identity import from_user
from chat.models import ApiToken, Room, RoomMembership
people = {}
users = {}
for name in ("owner", "mod", "member", "outsider"):
    users[name] = User.objects.create_user(f"{name}-%(tag)s", password="pw-123456789")
    client = Client()
    client.force_login(users[name])
    people[name] = {"cookie": "sessionid=" + client.cookies["sessionid"].value,
                    "id": from_user(users[name]).id, "key": ApiToken.issue(users[name])[1]}
room = Room.objects.create(name="%(room)s", owner=users["owner"], visibility="private")
RoomMembership.objects.create(room=room, user=users["mod"], role="moderator")
RoomMembership.objects.create(room=room, user=users["member"], role="member")
print(json.dumps(people))
"""


def team(cluster: Cluster) -> tuple[str, dict[str, dict[str, str]]]:
    """A private room with an owner, a moderator and a member, and an outsider: their
    sessions (`cookie`) and API keys (`key`) live in the shared database, so each is the same
    person on every worker."""
    tag = uuid.uuid4().hex[:8]
    room = f"team-{tag}"
    made = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", _PEOPLE % {"tag": tag, "room": room}],
        cwd=ROOT,
        env=cluster.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return room, json.loads(made.stdout.strip().splitlines()[-1])
