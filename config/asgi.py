"""ASGI entry point: `daphne config.asgi:application`."""

from __future__ import annotations

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
    """Give the consumer two things ASGI does not carry, when the server is daphne (it passes
    `send` as partial(Server.handle_reply, protocol)); under another server both are absent:

    - `scope["chat.transport_pending"]`: bytes the server still holds unsent for this socket,
      so the send buffer bound covers them (chat.realtime.connection); HTTP requests get it
      too, for the API's event streams (chat.api.member);
    - `scope["chat.close_frame"]`: send a close frame with any code. Autobahn's `sendClose`
      refuses 1008/1009/1011/1012 from an application, though daphne itself sends 1011 through
      `sendCloseFrame`; the protocol needs them.
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
            if extra:
                scope = {**scope, **extra}
        return await app(scope, receive, send)

    return wrapper


def _daphne_protocol(send: Any) -> Any:
    args = getattr(send, "args", None)
    return args[0] if args else None


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
