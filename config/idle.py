"""An idle timeout for daphne's connections: one that sends nothing, or never finishes its
request (a WebSocket handshake started and left), is closed after CHAT_IDLE_CONNECTION_SECONDS.

Daphne builds its HTTP factory with Twisted's default idle timeout, 12 hours, and has no option
for it: 800 never-finished handshakes and 300 silent sockets were each held 40 s and more. The
timeout only runs while no request is being handled (Twisted turns it off once a request is
whole and on again when its response ends), so WebSockets and event streams, however quiet,
are not touched. Daphne imports the application before it builds its server, so setting the
factory here, when `config.asgi` is imported, takes effect for `daphne config.asgi:application`.
"""

from __future__ import annotations

from typing import Any


def limit_idle_connections(seconds: float) -> bool:
    """Make daphne's next HTTP factory time idle connections out after `seconds`; False when
    daphne is not the server here."""
    try:
        from daphne import server
        from daphne.http_protocol import HTTPFactory
    except ImportError:
        return False

    # daphne.server uses the name it imported; daphne.http_protocol keeps the original class.
    class IdleLimitedHTTPFactory(HTTPFactory):
        def __init__(self, daphne_server: Any) -> None:
            super().__init__(daphne_server)
            self.timeOut = seconds

    server.HTTPFactory = IdleLimitedHTTPFactory
    return True
