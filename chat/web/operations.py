"""What operators and their machines ask a worker, answered before Django (no host check, no
session, no redirect to HTTPS: probes and scrapes come over the internal network, to each
worker's own address):

- `GET /healthz`: the process lives and its event loop answers (200).
- `GET /readyz`: its database, Redis, Chroma and embedding model are usable (200, else 503),
  with what failed (chat.readiness).
- `GET /metrics`: its metrics in Prometheus' text format, for `Authorization: Bearer
  <CHAT_METRICS_TOKEN>` only (401 without it or with another; 404 when no token is set).

docs/operations.md says how to use them; deploy/nginx.conf keeps them off the public site.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from chat.readiness import readiness

ASGIApp = Any
PATHS = ("/healthz", "/readyz", "/metrics")


def with_operations(app: ASGIApp) -> ASGIApp:
    """`app`, with the three paths above answered here."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http" or scope["path"] not in PATHS:
            return await app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            return await _respond(send, scope, 405, _json({"error": "Use GET."}), allow="GET")
        if scope["path"] == "/healthz":
            return await _respond(send, scope, 200, _json({"status": "alive"}))
        if scope["path"] == "/readyz":
            ready, body = await readiness().report()
            return await _respond(send, scope, 200 if ready else 503, _json(body))
        return await _metrics(scope, send)

    return wrapper


async def _metrics(scope: dict[str, Any], send: Any) -> None:
    token = settings.CHAT_METRICS_TOKEN
    if not token:
        # Off: as if there were no such page.
        return await _respond(send, scope, 404, _json({"error": "Not found."}))
    if not hmac.compare_digest(_bearer(scope).encode(), token.encode()):
        return await _respond(
            send,
            scope,
            401,
            _json({"error": "A metrics token is needed (Authorization: Bearer …)."}),
            www_authenticate='Bearer realm="metrics"',
        )
    return await _respond(send, scope, 200, _exposition(), content_type=CONTENT_TYPE_LATEST)


def _bearer(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
    return ""


def _exposition() -> bytes:
    """This process's metrics; with PROMETHEUS_MULTIPROC_DIR set (several processes on one
    port), those of every process writing there, added up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def _respond(
    send: Any,
    scope: dict[str, Any],
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    allow: str | None = None,
    www_authenticate: str | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if allow:
        headers.append((b"allow", allow.encode()))
    if www_authenticate:
        headers.append((b"www-authenticate", www_authenticate.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
