"""API errors: the protocol's error codes as JSON bodies, each with one HTTP status.

A body is always `{"error": {"code", "message"}}`, plus `retry_after` (seconds) and a
`Retry-After` header with `rate_limited`. Clients switch on `code`; the status only groups them.
"""

from __future__ import annotations

import math
from typing import Final

from django.http import JsonResponse

from chat.protocol import ProtocolError

# One status per code (docs/http-api.md, "Errors"). `too_long` is 413 whether the body or a
# field is too long; `busy` is 429 like `rate_limited`: both are limits on this client or room,
# not an overloaded server.
STATUS_BY_CODE: Final[dict[str, int]] = {
    "bad_json": 400,
    "bad_frame": 400,
    "unknown_type": 400,
    "invalid": 400,
    "too_long": 413,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "rate_limited": 429,
    "busy": 429,
    "internal": 500,
}


class ApiError(Exception):
    """A refused request; the view boundary turns it into a JSON error response."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 400)

    @classmethod
    def from_protocol(cls, err: ProtocolError) -> ApiError:
        """The same refusal a WebSocket client would get as an `error` frame."""
        return cls(err.code, err.message, retry_after=err.retry_after)

    def response(self) -> JsonResponse:
        """The JSON error response, with `Retry-After` or `WWW-Authenticate` where they apply."""
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            body["retry_after"] = round(self.retry_after, 3)
        response = JsonResponse({"error": body}, status=self.status)
        if self.retry_after is not None:
            # The header takes whole seconds; round up so a client that waits it is served.
            response["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.code == "unauthenticated":
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
