"""`manage.py createroom NAME --owner USERNAME [--private] [--title TITLE]`: make a room from
the terminal, as "Create a room" on the home page does (docs/rooms.md)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import rooms
from chat.identity import from_user
from chat.models import Room
from chat.protocol import ProtocolError


class Command(BaseCommand):
    help = (
        "Create the room NAME owned by USERNAME: public unless --private (then only its owner, "
        "the people they invite, and staff get in). Its title is --title, else its name."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the room's name: 1 to 64 of A-Z a-z 0-9 _ -")
        parser.add_argument("--owner", required=True, help="the username of its owner")
        parser.add_argument(
            "--private", action="store_true", help="members only, never listed to others"
        )
        parser.add_argument("--title", default="", help="what the page shows (default: NAME)")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(options["owner"])
        except User.DoesNotExist as err:
            raise CommandError(f"no user {options['owner']!r}", returncode=2) from err
        owner = from_user(user)
        if owner is None or not user.is_active:
            raise CommandError(f"user {options['owner']!r} is not active", returncode=2)
        title = " ".join(options["title"].split())
        if len(title) > 100:
            raise CommandError("the title is longer than 100 characters", returncode=2)
        visibility = Room.Visibility.PRIVATE if options["private"] else Room.Visibility.PUBLIC
        try:
            room = rooms.create_room(options["name"], owner, visibility=visibility, title=title)
        except ProtocolError as err:
            raise CommandError(err.message, returncode=2) from err
        if options["verbosity"] >= 1:
            self.stdout.write(
                f"Created the {room.visibility} room {room.name!r} ({room.title}), "
                f"owned by {user.get_username()}: /rooms/{room.name}/"
            )
