"""`manage.py importroom FILE [--room NAME]`: store a room exported as JSON (the room page's
"Export", `GET /api/rooms/<room>/export?format=json`) as a new room (docs/http-api.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import protocol
from chat.history.export import load_room
from chat.protocol import ProtocolError


class Command(BaseCommand):
    help = (
        "Store the JSON export FILE as a new room (its own name, or --room NAME): every "
        "message with its status, sources and feedback counts. Refused when the room or its "
        "messages are already stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a JSON export of a room")
        parser.add_argument("--room", default=None, help="store it under this name instead")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["room"]
        if name is not None and not protocol.is_room_name(name):
            raise CommandError("a room name is 1 to 64 of A-Z a-z 0-9 _ -", returncode=2)
        try:
            with open(options["file"], encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as err:
            raise CommandError(f"cannot read {options['file']}: {err}", returncode=2) from err
        try:
            room = load_room(data, room_name=name)
        except ProtocolError as err:
            raise CommandError(err.message, returncode=2) from err
        if options["verbosity"] >= 1:
            count = room.messages.count()
            self.stdout.write(f"Imported {count} messages into the room {room.name!r}.")
