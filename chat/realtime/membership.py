"""Joining and leaving a room, for every kind of member (a WebSocket, an SSE reader, the `ask`
command): presence, then the hub's `welcome`, backlog and live events; on leaving, only the
member goes (answers keep running)."""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import protocol, storage
from chat.identity import Identity
from chat.protocol import dumps
from chat.realtime.connection import Connection
from chat.realtime.worker import Worker

logger = logging.getLogger(__name__)


async def join_room(
    worker: Worker,
    room: str,
    identity: Identity,
    conn: Connection,
    *,
    conn_id: str,
    after: int | None,
) -> bool:
    """Make `conn` a member of `room`: it gets a `welcome`, then every event after it; True
    when it resumed from `after`. The room exists from its first join."""
    await database_sync_to_async(storage.get_room)(room)
    await worker.watch_room(room)
    await worker.coordinator.presence_add(room, conn_id, identity.to_wire())
    try:
        members = await worker.coordinator.members(room)
        user = identity.to_wire()

        def welcome(seq: int, resumed: bool, history: list[dict[str, Any]]) -> str:
            return dumps(
                protocol.welcome_frame(
                    room=room,
                    user=user,
                    seq=seq,
                    resumed=resumed,
                    history=history,
                    members=members,
                )
            )

        resumed = await worker.hub.join(
            room, conn, after=after, history_limit=settings.CHAT_HISTORY_LENGTH, welcome=welcome
        )
        await worker.presence_changed(room)
    except BaseException:
        # A join that fails half way must not leave a ghost in the member list.
        await leave_room(worker, room, conn, conn_id=conn_id)
        raise
    return resumed


async def leave_room(worker: Worker, room: str, conn: Connection, *, conn_id: str) -> None:
    """Drop the member only: closing a connection never cancels an answer. Presence is removed
    whatever happened to the connection's writer (a failure there once left ghost members)."""
    worker.hub.leave(room, conn)
    try:
        await conn.stop()
    finally:
        try:
            await worker.coordinator.presence_remove(room, conn_id)
            await worker.presence_changed(room)
        except Exception:
            logger.exception("Could not update presence of %s", conn.label)
