"""The `room` URL converter: room names in URLs follow the protocol's one rule."""

from __future__ import annotations

from chat.protocol import ROOM_NAME_PATTERN


class RoomNameConverter:
    """`<room:room>`: 1 to 64 of A-Z a-z 0-9 _ - (Django matches a path as a whole string)."""

    regex = ROOM_NAME_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
