"""What was said in a room, looked back at: feedback on answers (`feedback`), pages of the
history before a seq and search (`pages`), export and import (`export`). Plain synchronous
database functions, like `chat.storage`; every one asks `chat.rooms` who may read the room."""

from __future__ import annotations

from chat import rooms
from chat.identity import Identity
from chat.models import Room


def readable_room(room_name: str, identity: Identity) -> Room | None:
    """The room's row (None: nothing was ever said in it), or `not_found` where `identity` may
    not read it (a private room is not confirmed to outsiders)."""
    room = Room.objects.filter(name=room_name).first()
    rooms.access_to(room, room_name, identity).check_enter()
    return room
