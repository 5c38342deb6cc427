"""The floor of the chat server's stack: daphne (Twisted, Autobahn, asyncio) serving a bare ASGI
application that accepts every WebSocket, sends `{"type":"welcome"}` and answers pings; no
Django, no Channels, no rooms. What a connect costs before the chat does anything (the storm
benchmark's `daphne-floor`).

    daphne bench.floor_app:application
"""

from __future__ import annotations

from typing import Any


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": '{"type":"welcome"}'})
        elif kind == "websocket.receive" and message.get("text") == '{"type":"ping"}':
            await send({"type": "websocket.send", "text": '{"type":"pong"}'})
        elif kind == "websocket.disconnect":
            return
