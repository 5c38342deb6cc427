"""ASGI entry point: `daphne config.asgi:application`."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)
from django.conf import settings  # noqa: E402

from chat.realtime.entry import auth_stack  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.web.operations import with_operations  # noqa: E402
from config.handshake_log import skip_unlogged_config_dump  # noqa: E402
from config.idle import limit_idle_connections  # noqa: E402
from config.origin import OriginCheck  # noqa: E402

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
      (chat.realtime.outbox): at 100 answers a measurable share of a worker's CPU.
    """

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in ("websocket", "http"):
            protocol = _daphne_protocol(send)
            extra: dict[str, Any] = {}
            pending = _pending_bytes(protocol)
            if pending is not None:
                extra["chat.transport_pending"] = pending
            if hasattr(protocol, "sendCloseFrame"):
                extra["chat.close_frame"] = lambda code: protocol.sendCloseFrame(
                    code=code, isReply=False
                )
                sender = _text_sender(send, protocol)
                if sender is not None:
                    extra["chat.send_text_now"] = sender
            if extra:
                scope = {**scope, **extra}
        return await app(scope, receive, send)

    return wrapper


def _daphne_protocol(send: Any) -> Any:
    args = getattr(send, "args", None)
    return args[0] if args else None


class _LastEncoded:
    """The last frame encoded to UTF-8, and its bytes: the hub hands one event's frame to every
    member of the room in turn, so it is encoded once per event, not once per member."""

    __slots__ = ("data", "text")

    def __init__(self) -> None:
        self.text: str | None = None
        self.data = b""

    def encode(self, text: str) -> bytes:
        if text is not self.text:
            self.text, self.data = text, text.encode("utf8")
        return self.data


_last_encoded = _LastEncoded()


def _text_sender(send: Any, protocol: Any) -> Callable[[str], bool] | None:
    server = getattr(getattr(send, "func", None), "__self__", None)
    connections = getattr(server, "connections", None)
    if connections is None or not hasattr(protocol, "sendMessage"):
        return None
    open_state = protocol.STATE_OPEN

    def send_text(text: str) -> bool:
        # Daphne's Server.handle_reply drops what comes after the connection went away, and
        # autobahn raises for a socket not open (yet, or any more): that one goes the ASGI way.
        state = connections.get(protocol)
        if state is None or state.get("disconnected") or protocol.state != open_state:
            return False
        protocol.sendMessage(_last_encoded.encode(text), False)
        return True

    return send_text


def _pending_bytes(protocol: Any) -> Callable[[], int] | None:
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "dataBuffer"):
        return None

    def pending() -> int:
        # Twisted's FileDescriptor keeps unsent bytes in dataBuffer (from offset) and a list.
        return (
            len(transport.dataBuffer)
            - getattr(transport, "offset", 0)
            + getattr(transport, "_tempDataLen", 0)
        )

    return pending


application = ProtocolTypeRouter(
    {
        # /healthz, /readyz and /metrics are answered before Django (chat.web.operations).
        "http": transport_probe(with_operations(django_asgi_app)),
        # The user is resolved with the access check, in one batched trip (chat.realtime.entry).
        "websocket": transport_probe(OriginCheck(auth_stack(URLRouter(websocket_urlpatterns)))),
    }
)

# What is loaded so far lives as long as the process: out of the garbage collector's sight
# until the runtime's warm-up freezes the rest (chat.runtime.freeze_loaded_objects).
gc.freeze()
