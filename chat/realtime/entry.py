"""Who a WebSocket connect is and whether they may enter: checked in one trip to the database
thread for every connect waiting, not one trip (or two) each.

A connect needs its session, its user (for a signed-in person), its identity and the access
rule's verdict with the room's row (`chat.rooms.access_and_rooms`). Each used to be its own
`database_sync_to_async` hop, queued behind every other connect's on the worker's one database
thread; in a reconnect storm thousands queue at once (docs/benchmarks.md, "Reconnect storm").
Here, connects that arrive while a batch is in the database thread wait for the next batch,
which checks them all together: every connect is still checked against the database as it is
after the connect arrived, by the one access rule.

`auth_stack` replaces Channels' `AuthMiddlewareStack` for the chat's sockets: the same cookies,
session and user, resolved in that batch instead of by the middleware in a hop of its own, and
set in one step that stays out of the socket's life (see `SocketIdentity`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from channels.auth import UserLazyObject, get_user
from channels.db import database_sync_to_async
from django.conf import settings
from django.http import parse_cookie
from django.utils.functional import empty

from chat import identity as identities
from chat import rooms
from chat.models import Room

logger = logging.getLogger(__name__)

# Connects checked in one batch at most (one query's IN lists stay reasonable).
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Entry:
    """A connect's verdict: who it is (None: login is required), and, when someone, their
    access to the room and its row."""

    identity: identities.Identity | None
    access: rooms.Access | None = None
    room: Room | None = None


_Request = tuple[dict[str, Any], str, "asyncio.Future[Entry]"]


class EntryChecks:
    """Batches connects' identity and access checks (see the module docstring)."""

    def __init__(self) -> None:
        self._waiting: list[_Request] = []
        self._draining: asyncio.Task[None] | None = None

    async def check(self, scope: dict[str, Any], room: str) -> Entry:
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._waiting.append((scope, room, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name="entry checks")
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    entries = await database_sync_to_async(check_batch)(
                        [(scope, room) for scope, room, _ in batch]
                    )
                except Exception as err:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                for (_, _, future), entry in zip(batch, entries, strict=True):
                    if not future.done():  # its connect may have been cancelled
                        future.set_result(entry)
        finally:
            self._draining = None


def check_batch(requests: list[tuple[dict[str, Any], str]]) -> list[Entry]:
    """In the database thread: each scope's user (as Channels' `get_user`) and identity, then
    the access rule for all of them in two queries."""
    people: list[identities.Identity | None] = []
    for scope, _ in requests:
        user = scope.get("user")
        if isinstance(user, UserLazyObject) and user._wrapped is empty:
            # What AuthMiddleware would have awaited in a hop of its own.
            user._wrapped = get_user.func(scope)
        people.append(identities.resolve(scope.get("user"), scope.get("session")))
    known = [(room, person) for (_, room), person in zip(requests, people, strict=True) if person]
    verdicts = iter(rooms.access_and_rooms(known))
    entries: list[Entry] = []
    for person in people:
        if person is None:
            entries.append(Entry(identity=None))
        else:
            access, row = next(verdicts)
            entries.append(Entry(identity=person, access=access, room=row))
    return entries


class SocketIdentity:
    """What Channels' cookie, session and auth middlewares put in a socket's scope (`cookies`;
    `session`, the session store for the cookie's key, loaded when first read; `user`, left to
    `check_batch`), in one step: `__call__` returns the inner application's coroutine instead of
    awaiting it. Channels' three stay in every socket's chain of awaits for its whole life, each
    with a copy of the scope, and its session wrapper sits in every frame's `send`; for a socket
    that wrapper never saves (it saves on `http.response.start` only), so nothing is lost."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        scope = {
            **scope,
            "cookies": cookies,
            "session": self.session_store(cookies.get(settings.SESSION_COOKIE_NAME)),
            "user": UserLazyObject(),
        }
        return self.inner(scope, receive, send)


def auth_stack(inner: Any) -> Any:
    """Channels' `AuthMiddlewareStack` (cookies, session, user) with the user resolved in the
    connect's batch (`EntryChecks`), not in a database hop of its own."""
    return SocketIdentity(inner)
