"""Guests as a browser is one: the room page gives the session its guest, and the socket
carries the session's cookie (with the site's own origin)."""

from __future__ import annotations

from django.test import AsyncClient

from tests.conftest import Client, connect

SITE = [(b"origin", b"http://testserver"), (b"host", b"testserver")]


async def browser_guest(room: str) -> tuple[Client, AsyncClient]:
    """A guest with a session in `room`: its socket, and its HTTP client (same session)."""
    http = AsyncClient()
    page = await http.get(f"/rooms/{room}/")
    assert page.status_code == 200
    cookie = f"sessionid={http.cookies['sessionid'].value}".encode()
    return await connect(room, headers=[(b"cookie", cookie), *SITE]), http
