"""API errors: a refusal (`chat.protocol.ProtocolError`, the one error type every transport
raises) as a JSON body, each code with one HTTP status.

A body is always `{"error": {"code", "message"}}`, plus `retry_after` (seconds) and a
`Retry-After` header with `rate_limited`. Clients switch on `code`; the status only groups them.
"""

from __future__ import annotations

import math
from typing import Final

from django.http import JsonResponse

from chat.protocol import ProtocolError
from chat.rooms.configuration import InvalidSettings

# One status per code (docs/http-api.md, "Errors"). `too_long` is 413 whether the body or a
# field is too long; `busy` is 429 like `rate_limited`: both are limits on this client or room,
# not an overloaded server.
STATUS_BY_CODE: Final[dict[str, int]] = {
    "bad_json": 400,
    "bad_frame": 400,
    "unknown_type": 400,
    "invalid": 400,
    "too_long": 413,
    "limit_reached": 413,
    "unsupported_type": 415,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "rate_limited": 429,
    "busy": 429,
    "internal": 500,
    "unavailable": 503,
}


def error_response(err: ProtocolError) -> JsonResponse:
    """The JSON error response for a refusal, with `Retry-After` or `WWW-Authenticate` where
    they apply: the same `ProtocolError` a WebSocket client gets as an `error` frame."""
    body: dict[str, object] = {"code": err.code, "message": err.message}
    if err.retry_after is not None:
        body["retry_after"] = round(err.retry_after, 3)
    if isinstance(err, InvalidSettings):
        body["fields"] = err.fields
    response = JsonResponse({"error": body}, status=STATUS_BY_CODE.get(err.code, 400))
    if err.retry_after is not None:
        # The header takes whole seconds; round up so a client that waits it is served.
        response["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    if err.code == "unauthenticated":
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
