"""The WebSocket origin check: cross-site WebSocket hijacking is refused before accept.

A browser's `Origin` is compared by scheme, host and port, as Django's CSRF check compares a
POST's: it must be this server's own origin (the scheme the socket came in on, and the `Host`
the browser used, itself one of `ALLOWED_HOSTS`), or one of `CSRF_TRUSTED_ORIGINS` (exact, or
`https://*.example.com` for subdomains). A page on another port of the same host
(`http://localhost:9999`, any local dev server) is another origin and is refused.

A handshake with no `Origin`, or with `Origin: null` (sandboxed frames, some redirects), has no
origin to check. `null` is always refused. No `Origin` at all means a program, not a browser
(browsers always send one): it is let through only without a session cookie, so a program gets
a guest identity of its own and can never act with someone's session without naming an origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


class OriginCheck:
    """ASGI middleware: refuse a WebSocket handshake whose origin is not allowed."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        # The inner application's coroutine, returned, not awaited: no frame of ours stays in
        # the socket's chain of awaits for its whole life.
        if not handshake_allowed(scope):
            denier = WebsocketDenier()
            return denier(scope, receive, send)
        return self.app(scope, receive, send)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _has_session_cookie(scope: dict[str, Any]) -> bool:
    cookies = _header(scope, b"cookie") or ""
    wanted = settings.SESSION_COOKIE_NAME + "="
    return any(part.strip().startswith(wanted) for part in cookies.split(";"))


def _is_secure(scope: dict[str, Any]) -> bool:
    """As Django's `request.is_secure()`: the socket's own scheme, or the proxy's header named
    by `SECURE_PROXY_SSL_HEADER` (TLS ended at nginx)."""
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, secure_value = proxy
        # Django names it as in META ("HTTP_X_FORWARDED_PROTO"); ASGI headers are lower-case.
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        value = _header(scope, name)
        return value is not None and value.split(",")[0].strip() == secure_value
    return False


def _allowed_hosts() -> list[str]:
    if settings.ALLOWED_HOSTS:
        return list(settings.ALLOWED_HOSTS)
    return [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []


def handshake_allowed(scope: dict[str, Any]) -> bool:
    """True if this WebSocket handshake may go on (see the module docstring)."""
    origin = _header(scope, b"origin")
    if origin is None:
        return not _has_session_cookie(scope)
    host = _header(scope, b"host") or ""
    return origin_allowed(origin, host=host, secure=_is_secure(scope))


def origin_allowed(origin: str, *, host: str, secure: bool) -> bool:
    """Django's CSRF origin rule for a socket reached at `host` (the `Host` header)."""
    if origin == "null":
        return False
    try:
        parsed = urlsplit(origin)
        parsed.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        return False
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    domain, _ = split_domain_port(host)
    if domain and validate_host(domain, _allowed_hosts()):
        own = f"{'https' if secure else 'http'}://{host}"
        if origin.lower() == own.lower():
            return True
    return _trusted(origin, parsed.scheme, parsed.netloc, settings.CSRF_TRUSTED_ORIGINS)


def _trusted(origin: str, scheme: str, netloc: str, trusted: Iterable[str]) -> bool:
    """In CSRF_TRUSTED_ORIGINS: exactly, or by a `scheme://*.domain` wildcard."""
    for entry in trusted:
        if "*" not in entry:
            if origin.lower() == entry.lower():
                return True
            continue
        entry_parts = urlsplit(entry)
        if entry_parts.scheme == scheme and is_same_domain(netloc, entry_parts.netloc[1:]):
            return True
    return False
