"""The rooms issue's migrations on a database written before them: every room stays, public,
with no owner (staff can give it one in the admin), and every message stays as it was."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from chat import rooms
from chat.identity import new_guest
from chat.models import Message, Room

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("chat", "0002_api_token")]


def test_rooms_from_before_owners_become_public_with_no_owner_and_lose_nothing() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    OldRoom, OldMessage = old.get_model("chat", "Room"), old.get_model("chat", "Message")
    cafe = OldRoom.objects.create(name="cafe", collection="menu", last_seq=41)
    OldMessage.objects.create(
        id="q_1",
        room=cafe,
        role="user",
        text="라떼 얼마예요?",
        user_name="Minji",
        created=timezone.now(),
    )
    OldMessage.objects.create(
        id="a_1", room=cafe, role="assistant", text="4,500원입니다.", created=timezone.now()
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    room = Room.objects.get(name="cafe")
    assert (room.visibility, room.owner_id, room.allow_guests) == ("public", None, True)
    assert (room.collection, room.last_seq) == ("menu", 41)
    assert list(Message.objects.order_by("id").values_list("id", "text", "redacted")) == [
        ("a_1", "4,500원입니다.", False),
        ("q_1", "라떼 얼마예요?", False),
    ]
    # Anyone the server lets in still enters, guests too.
    assert rooms.access("cafe", new_guest()).may_enter
