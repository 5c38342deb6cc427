"""People for the rooms tests: accounts signed in through a real session, as a browser is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from chat.identity import Identity, from_user

SITE = [(b"origin", b"http://testserver"), (b"host", b"testserver")]


@dataclass
class Person:
    user: Any
    http: AsyncClient  # signed in

    @property
    def identity(self) -> Identity:
        identity = from_user(self.user)
        assert identity is not None
        return identity

    @property
    def ws_headers(self) -> list[tuple[bytes, bytes]]:
        """A browser's handshake: the session cookie, and the site's own origin."""
        cookie = f"sessionid={self.http.cookies['sessionid'].value}".encode()
        return [(b"cookie", cookie), *SITE]


async def person(name: str, *, staff: bool = False) -> Person:
    user = await database_sync_to_async(User.objects.create_user)(
        name, password="pw-123456789", is_staff=staff
    )
    http = AsyncClient()
    await database_sync_to_async(http.force_login)(user)
    return Person(user=user, http=http)
