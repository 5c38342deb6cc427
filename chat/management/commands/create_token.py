"""`manage.py create_token USERNAME [--name NAME]`: issue an API token (docs/http-api.md)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.models import ApiToken


class Command(BaseCommand):
    help = (
        "Issue an API token for USERNAME and print its key, once: only a hash is stored. "
        "Programs send it as `Authorization: Bearer <key>`; delete the token in the admin "
        "to revoke it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user the token acts as")
        parser.add_argument("--name", default="", help="a label, e.g. the program's name")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(options["username"])
        except User.DoesNotExist as err:
            raise CommandError(f"no user {options['username']!r}", returncode=2) from err
        if not user.is_active:
            raise CommandError(f"user {options['username']!r} is not active", returncode=2)
        _, key = ApiToken.issue(user, name=options["name"])
        if options["verbosity"] >= 1:
            self.stderr.write(
                f"Token issued for {user.get_username()}. Copy the key now: "
                "it is not stored and cannot be shown again."
            )
        # Alone on stdout, so scripts can capture it: KEY=$(manage.py create_token alice).
        self.stdout.write(key)
