"""The WebSocket consumer: thin. It accepts, parses each frame into a typed command, hands it
to the runtime's services (membership, admission, the answer runner), and queues frames out.
Long work (answers) runs in its own tasks, so `cancel` and `disconnect` are handled at once."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import identity as identities
from chat import protocol
from chat.observability import context, metrics
from chat.protocol import ProtocolError, dumps
from chat.ratelimit import TokenBucket
from chat.realtime.backends import store_unavailable
from chat.realtime.outbox import Outbox
from chat.rooms.configuration import public_info
from chat.runtime import Runtime, get_runtime

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ChatConsumer(AsyncWebsocketConsumer):
    """One member's socket in one room (`/ws/rooms/<room>/`)."""

    # No per-connection channel: room events come from the runtime's hub, control messages
    # through the runtime's own channel. (An unknown alias makes Channels skip new_channel.)
    channel_layer_alias = "__no_layer__"

    # Channels' __init__ gives each consumer a list of groups to join; this one joins none.
    groups: list[str] = []  # never mutated: shared by every instance

    # One per open socket: its fields in slots, so no instance dictionary is made for them
    # (Channels' base classes set nothing else on it here: see `__init__` and `__call__`).
    __slots__ = (
        "_frames",
        "_typing",
        "address",
        "base_send",
        "channel_layer",
        "conn",
        "conn_id",
        "counted_address",
        "counted_open",
        "flood_strikes",
        "identity",
        "room",
        "runtime",
        "scope",
    )

    def __init__(self) -> None:
        # Not Channels' __init__: it only gives the consumer a list of groups (see `groups`).
        self.room = ""
        self.conn: Outbox | None = None
        self.identity: identities.Identity | None = None
        self.runtime: Runtime | None = None
        self.conn_id = ""
        self.address: str | None = None
        self.counted_address: str | None = None
        self.counted_open = False
        self.flood_strikes = 0
        # Made at the first frame that needs it, not per idle socket. A bucket made later is
        # the same bucket: one made at connect would have refilled to its burst by then.
        self._frames: TokenBucket | None = None
        self._typing: TokenBucket | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Channels' `AsyncConsumer.__call__` (with no channel layer) without its
        `await_many_dispatch`: that keeps a task for the next `receive()` and `asyncio.wait`'s
        waiter, set and callbacks for every open socket, about 3 KiB each while it idles
        (docs/benchmarks.md, "Memory per idle connection"). The same order: each message is
        dispatched to its end before the next is received; `StopConsumer` ends it cleanly."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
                # As Channels' loop, let the event loop run between two messages even when
                # the next one already waits (a queue's get() does not yield then): the frames
                # this one queued go out first (an error before the close a flood earns), and
                # a client sending fast does not hold the loop from the other sockets.
                await asyncio.sleep(0)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its `aclose_old_connections()` before every message: that
        is a hop to the database thread for each connect and each frame (measured: about an
        eighth of a worker's time in a reconnect storm). Every database call made here goes
        through `database_sync_to_async`, which closes old connections around itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' own, without its `aclose_old_connections()` hop (see `dispatch`); this
        consumer is in no channel-layer group."""
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def connect(self) -> None:
        """Refuse (before accept: HTTP 403) when login is required or the room is not one
        you may enter (a private room you are not a member of); 4004 for a bad room name."""
        self.room = self.scope["url_route"]["kwargs"]["room"]
        admitted_at = time.monotonic()
        self.runtime = await get_runtime()
        # Session, user, identity and the access rule in one batched database trip.
        entry = await self.runtime.entry.check(self.scope, self.room)
        self.identity = entry.identity
        if self.identity is None:
            await self.close()  # Before accept: the handshake is refused (HTTP 403).
            return
        if not protocol.is_room_name(self.room):
            await self.accept()
            metrics.socket_closed(protocol.CLOSE_BAD_ROOM)
            await self.close(code=protocol.CLOSE_BAD_ROOM)
            return
        access, row = entry.access, entry.room
        if access is None or not access.may_enter:
            await self.close()  # Refused like a bad origin: nothing says the room exists.
            return
        await self.accept()
        metrics.CONNECTIONS_BY_TRANSPORT["websocket"].inc()
        self.counted_open = True
        self.conn_id = secrets.token_hex(8)
        # Every line logged while handling this socket's frames says whose and where; the
        # connection's id stands for a request id.
        context.bind(room=self.room, user_id=self.identity.id, request_id=f"ws_{self.conn_id}")
        # The client's address (the proxy's X-Forwarded-For under `daphne --proxy-headers`).
        client = self.scope.get("client")
        self.address = str(client[0]) if client else None
        # A guest is a new identity at will: their connections are counted by address.
        self.counted_address = self.address if self.identity.is_guest else None
        if self.counted_address is not None and not self.runtime.guest_connections.acquire(
            self.counted_address
        ):
            self.counted_address = None
            metrics.socket_closed(protocol.CLOSE_TOO_MANY)
            await self.close(code=protocol.CLOSE_TOO_MANY)
            return
        self.conn = Outbox(
            send=self._send_text,
            close=self._close_with,
            max_bytes=settings.CHAT_SEND_BUFFER_BYTES,
            transport_pending=self.scope.get("chat.transport_pending"),
            send_now=self.scope.get("chat.send_text_now"),
            label=f"{self.room}/{self.identity.name}",
            user_id=self.identity.id,
        )
        try:
            await self.runtime.membership.join(
                self.room,
                self.identity,
                self.conn,
                conn_id=self.conn_id,
                after=_after(self.scope),
                admitted_at=admitted_at,
                access=access.to_wire(),
                room_info=public_info(row, self.room),
            )
        except Exception as err:
            # The join left nothing behind (Membership.join); the client tries again.
            if not store_unavailable(err):
                raise
            logger.warning(
                "Join of %s to %s: Redis is away (%s)", self.identity.name, self.room, err
            )
            metrics.socket_closed(protocol.CLOSE_TRY_AGAIN)
            await self._close_with(protocol.CLOSE_TRY_AGAIN)

    async def disconnect(self, code: int) -> None:
        """Drop the socket only: answers keep running and are stored for everyone."""
        if self.counted_open:
            self.counted_open = False
            metrics.CONNECTIONS_BY_TRANSPORT["websocket"].dec()
        if self.runtime is not None and self.counted_address is not None:
            self.runtime.guest_connections.release(self.counted_address)
            self.counted_address = None
        if self.conn is None or self.runtime is None:
            return
        await self.runtime.membership.leave(self.room, self.conn, conn_id=self.conn_id)
        # The outbox holds our bound methods: let go of it, and this socket's objects (daphne's
        # and Twisted's with them) are freed now, not left in a cycle for the collector.
        self.conn = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.conn is None or self.conn.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.CHAT_MAX_FRAME_BYTES:
            self.conn.close_soon(protocol.CLOSE_TOO_BIG)
            return
        try:
            if self._frames is None:
                rate = settings.CHAT_FRAME_RATE_PER_SECOND
                self._frames = TokenBucket(rate, rate * 2)
            wait = self._frames.take()
            if wait:
                raise ProtocolError("rate_limited", "Too many frames; slow down.", retry_after=wait)
            if text_data is None:
                raise ProtocolError("bad_frame", "Frames must be JSON text, not binary.")
            command = protocol.parse_command(
                text_data,
                max_chars=settings.CHAT_MAX_QUESTION_CHARS,
                max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS,
            )
            await self._handlers[command.type](self, command)
        except ProtocolError as err:
            self._error(err)
        except Exception:
            # Not the client's fault, and we cannot vouch for this connection's state any more:
            # the protocol's 1011; the client reconnects with `after` and loses nothing.
            logger.exception("Frame from %s in %s failed", self.conn.label, self.room)
            self.conn.close_soon(protocol.CLOSE_INTERNAL)

    def _error(self, err: ProtocolError) -> None:
        if self.conn is None:
            return
        metrics.frame_refused(err.code)
        if err.code == "rate_limited":
            self.flood_strikes += 1
            if self.flood_strikes > settings.CHAT_FLOOD_LIMIT:
                self.conn.close_soon(protocol.CLOSE_POLICY)
                return
        self.conn.push(
            dumps(protocol.error_frame(err.code, err.message, retry_after=err.retry_after))
        )

    def _member(self) -> tuple[Runtime, identities.Identity]:
        # Frames are only received after connect() set these up.
        if self.runtime is None or self.identity is None:
            raise RuntimeError("frame received before the connection was set up")
        return self.runtime, self.identity

    async def on_ask(self, command: protocol.Ask) -> None:
        runtime, identity = self._member()
        await runtime.admission.ask(self.room, identity, command, address=self.address)
        self.flood_strikes = 0

    async def on_say(self, command: protocol.Say) -> None:
        runtime, identity = self._member()
        await runtime.admission.say(self.room, identity, command)
        self.flood_strikes = 0

    async def on_edit(self, command: protocol.Edit) -> None:
        runtime, identity = self._member()
        await runtime.admission.edit(self.room, identity, command, address=self.address)
        self.flood_strikes = 0

    async def on_new_version(self, command: protocol.Regenerate | protocol.Continue) -> None:
        runtime, identity = self._member()
        await runtime.admission.new_version(self.room, identity, command, address=self.address)
        self.flood_strikes = 0

    async def on_typing(self, command: protocol.Typing) -> None:
        runtime, identity = self._member()
        if self.conn is None:
            return
        if self._typing is None:
            # One `typing` notice passed on per interval; the others are dropped without a
            # word (a flood of them meets the frame rate).
            interval = max(settings.CHAT_TYPING_INTERVAL_SECONDS, 0.001)
            self._typing = TokenBucket(1.0 / interval, 1)
        if self._typing.take():
            return
        await runtime.typing.notify(self.room, identity.to_wire(), sender=self.conn)

    async def on_cancel(self, command: protocol.Cancel) -> None:
        runtime, identity = self._member()
        await runtime.runner.cancel(self.room, identity, command.answer_id)

    async def on_redact(self, command: protocol.Redact) -> None:
        runtime, identity = self._member()
        await runtime.moderation.redact(self.room, identity, command)

    async def on_remove(self, command: protocol.Remove) -> None:
        runtime, identity = self._member()
        await runtime.moderation.remove(self.room, identity, command.user_id)

    async def on_set_role(self, command: protocol.SetRole) -> None:
        runtime, identity = self._member()
        await runtime.moderation.set_role(self.room, identity, command.user_id, command.role)

    async def on_feedback(self, command: protocol.Feedback) -> None:
        runtime, identity = self._member()
        await runtime.feedback.give(self.room, identity, command)

    async def on_ping(self, command: protocol.Ping) -> None:
        if self.conn is not None:
            self.conn.push(dumps(protocol.pong_frame()))

    # One handler per command type, dispatched through this table (never getattr on input).
    _handlers: dict[str, Callable[[ChatConsumer, Any], Awaitable[None]]] = {
        "ask": on_ask,
        "say": on_say,
        "typing": on_typing,
        "cancel": on_cancel,
        "ping": on_ping,
        "redact": on_redact,
        "remove": on_remove,
        "set_role": on_set_role,
        "regenerate": on_new_version,
        "continue": on_new_version,
        "edit": on_edit,
        "feedback": on_feedback,
    }

    async def _send_text(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def _close_with(self, code: int) -> None:
        close_frame = self.scope.get("chat.close_frame")
        if close_frame is not None and not (code == 1000 or 3000 <= code <= 4999):
            # Under daphne, codes like 1008/1009 must bypass autobahn's check (config.asgi).
            close_frame(code)
        else:
            await self.close(code=code)


def _after(scope: dict[str, Any]) -> int | None:
    """The `after=<seq>` resume cursor, or None (absent or not a non-negative integer)."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after")
    if not values:
        return None
    try:
        after = int(values[-1])
    except ValueError:
        return None
    return after if after >= 0 else None
