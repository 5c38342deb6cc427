"""ASGI entry point: `daphne config.asgi:application`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from config.origin import OriginCheck  # noqa: E402


def transport_probe(app: Any) -> Any:
    """Expose, as `scope["chat.transport_pending"]`, how many bytes the server still holds
    unsent for this socket, so the send buffer bound covers them (see
    chat.realtime.connection). Daphne passes `send` as partial(Server.handle_reply, protocol);
    under another server the key is simply absent and only our own queue is bounded."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            pending = _pending_bytes(send)
            if pending is not None:
                scope = {**scope, "chat.transport_pending": pending}
        return await app(scope, receive, send)

    return wrapper


def _pending_bytes(send: Any) -> Callable[[], int] | None:
    protocol = getattr(send, "args", (None,))[0] if getattr(send, "args", None) else None
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
        "http": django_asgi_app,
        "websocket": transport_probe(OriginCheck(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    }
)
