"""ASGI entry point: `daphne config.asgi:application`."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Awaitable
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from chat.realtime.entry import auth_stack  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.web.operations import with_operations  # noqa: E402
from config.abandoned import quiet_abandoned_disconnects  # noqa: E402
from config.frames import sends_plain_frames, text_frame, write_now  # noqa: E402
from config.handshake_log import skip_unlogged_config_dump  # noqa: E402
from config.idle import limit_idle_connections  # noqa: E402
from config.inbox import trim_input_queue  # noqa: E402
from config.origin import OriginCheck  # noqa: E402
from config.routing import ProtocolRouter, SocketRouter  # noqa: E402

limit_idle_connections(settings.CHAT_IDLE_CONNECTION_SECONDS)
skip_unlogged_config_dump()


def transport_probe(app: Any) -> Any:
    """Give the consumer three things ASGI does not carry, when the server is daphne (it passes
    `send` as partial(Server.handle_reply, protocol)); under another server they are absent:

    - `scope["chat.transport_pending"]`: bytes the server still holds unsent for this socket,
      so the send buffer bound covers them (chat.realtime.connection); HTTP requests get it
      too, for the API's event streams (chat.api.member);
    - `scope["chat.close_frame"]`: send a close frame with any code. Autobahn's `sendClose`
      refuses 1008/1009/1011/1012 from an application, though daphne itself sends 1011 through
      `sendCloseFrame`; the protocol needs them.
    - `scope["chat.send_text_now"]`: send a text frame before returning (False when the socket
      is not open), what daphne does for a `websocket.send` without the five coroutine hops of
      the ASGI `send` through Channels and daphne, and without waking a writer task per frame
      (chat.realtime.outbox): at 100 answers a measurable share of a worker's CPU. The frame
      is built once per event and written to the socket at once when it can be
      (config.frames).

    And a socket's input queue loses what daphne never uses of it (config.inbox).
    """

    def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        # Returns the application's coroutine, not awaiting it: no frame of ours stays in every
        # socket's chain of awaits. Called where daphne starts the application, in its loop.
        quiet_abandoned_disconnects(asyncio.get_running_loop())
        if scope["type"] in ("websocket", "http"):
            socket = _DaphneSocket.of(send)
            if socket is not None:
                scope = {**scope, **socket.scope_items()}
            if scope["type"] == "websocket":
                trim_input_queue(receive)
        return app(scope, receive, send)

    # A plain function returning a coroutine: tell Channels' router it is an ASGI 3 application.
    wrapper._asgi_single_callable = True  # type: ignore[attr-defined]
    return wrapper


class _DaphneSocket:
    """Daphne's protocol and transport of one socket or request, and what `transport_probe`
    gives the application from them, as bound methods of this one small object rather than
    closures (three functions and their cells for every open socket)."""

    __slots__ = ("connections", "protocol", "transport")

    def __init__(self, protocol: Any, transport: Any, connections: Any) -> None:
        self.protocol = protocol
        self.transport = transport
        self.connections = connections

    @classmethod
    def of(cls, send: Any) -> _DaphneSocket | None:
        """From daphne's `send` (partial(Server.handle_reply, protocol)); None elsewhere."""
        args = getattr(send, "args", None)
        protocol = args[0] if args else None
        transport = getattr(protocol, "transport", None)
        if transport is not None and not hasattr(transport, "dataBuffer"):
            transport = None
        server = getattr(getattr(send, "func", None), "__self__", None)
        connections = getattr(server, "connections", None)
        if transport is None and not hasattr(protocol, "sendCloseFrame"):
            return None
        return cls(protocol, transport, connections)

    def scope_items(self) -> dict[str, Any]:
        items: dict[str, Any] = {}
        if self.transport is not None:
            items["chat.transport_pending"] = self.pending
        if hasattr(self.protocol, "sendCloseFrame"):
            items["chat.close_frame"] = self.close_frame
            if self.connections is not None and hasattr(self.protocol, "sendMessage"):
                items["chat.send_text_now"] = self.send_text
        return items

    def pending(self) -> int:
        # Twisted's FileDescriptor keeps unsent bytes in dataBuffer (from offset) and a list.
        transport = self.transport
        return (
            len(transport.dataBuffer)
            - getattr(transport, "offset", 0)
            + getattr(transport, "_tempDataLen", 0)
        )

    def close_frame(self, code: int) -> None:
        self.protocol.sendCloseFrame(code=code, isReply=False)

    def send_text(self, text: str) -> bool:
        # Daphne's Server.handle_reply drops what comes after the connection went away, and
        # autobahn raises for a socket not open (yet, or any more): that one goes the ASGI way.
        protocol = self.protocol
        state = self.connections.get(protocol)
        if state is None or state.get("disconnected") or protocol.state != protocol.STATE_OPEN:
            return False
        encoded = _last_encoded.encode(text)
        if self.transport is not None and sends_plain_frames(protocol, len(encoded.data)):
            write_now(self.transport, encoded.frame())
        else:
            protocol.sendMessage(encoded.data, False)
        return True


class _LastEncoded:
    """The last frame encoded to UTF-8, its bytes and its text frame: the hub hands one event's
    frame to every member of the room in turn, so it is encoded once per event, not once per
    member (config.frames)."""

    __slots__ = ("_frame", "data", "text")

    def __init__(self) -> None:
        self.text: str | None = None
        self.data = b""
        self._frame: bytes | None = None

    def encode(self, text: str) -> _LastEncoded:
        if text is not self.text:
            self.text, self.data, self._frame = text, text.encode("utf8"), None
        return self

    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = text_frame(self.data)
        return self._frame


_last_encoded = _LastEncoded()


application = ProtocolRouter(
    {
        # /healthz, /readyz and /metrics are answered before Django (chat.web.operations).
        "http": transport_probe(with_operations(django_asgi_app)),
        # The user is resolved with the access check, in one batched trip (chat.realtime.entry).
        "websocket": transport_probe(OriginCheck(auth_stack(SocketRouter(websocket_urlpatterns)))),
    }
)

# What is loaded so far lives as long as the process: out of the garbage collector's sight
# until the runtime's warm-up freezes the rest (chat.runtime.freeze_loaded_objects).
gc.freeze()
