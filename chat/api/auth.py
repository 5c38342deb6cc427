"""Who is calling the API: a bearer token (programs), else the site's session (a logged-in user,
or the session's guest where CHAT_ALLOW_GUESTS), like the pages and the WebSocket.

CSRF: a session is carried by cookies, which a browser attaches to cross-site requests too, so
every session-authenticated POST must pass Django's CSRF check (the `X-CSRFToken` header). A
token request carries no cookie a third party could ride on, so it is exempt.
"""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware

from chat import storage
from chat.identity import Identity, ensure_guest, from_user
from chat.protocol import ProtocolError

# `last_used` is written at most this often per token, not on every request.
LAST_USED_GRANULARITY = timedelta(minutes=1)


async def authenticate(request: HttpRequest, *, write: bool) -> Identity:
    """The caller's identity, or `ProtocolError` (`unauthenticated` 401, `forbidden` 403 for a
    session POST that fails the CSRF check). `write` is True for requests that change state."""
    return await sync_to_async(_authenticate)(request, write)


def _authenticate(request: HttpRequest, write: bool) -> Identity:
    header = request.headers.get("Authorization")
    if header is not None:
        return _token_identity(header)
    identity = from_user(request.user)
    if identity is None and not settings.CHAT_ALLOW_GUESTS:
        raise ProtocolError(
            "unauthenticated", "Log in, or send an API token: Authorization: Bearer <key>."
        )
    if write:
        reason = _csrf_failure(request)
        if reason is not None:
            raise ProtocolError(
                "forbidden",
                f"CSRF check failed ({reason}). Send the csrftoken cookie's value in the "
                "X-CSRFToken header, or use an API token.",
            )
    # A guest is stored in the session, so the same browser stays the same member.
    return identity or ensure_guest(request.session)


def _token_identity(header: str) -> Identity:
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ProtocolError("unauthenticated", "Use Authorization: Bearer <key>.")
    user = storage.api_token_user(key, touch_after=LAST_USED_GRANULARITY)
    identity = from_user(user) if user is not None else None
    if identity is None:
        raise ProtocolError("unauthenticated", "This API token is not valid.")
    return identity


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, run on demand (the API views are `csrf_exempt` so that token
    requests pass); rejections come back as a 403 response carrying the reason."""

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponseForbidden:
        return HttpResponseForbidden(reason)


def _no_view(request: HttpRequest) -> HttpResponseForbidden:
    """Stands for the view in `process_view` (it is never called; it is not csrf_exempt)."""
    return HttpResponseForbidden()


def _csrf_failure(request: HttpRequest) -> str | None:
    """None when the request passes the CSRF check, else why it does not."""
    check = _CsrfCheck(_no_view)
    check.process_request(request)
    response = check.process_view(request, _no_view, (), {})
    if response is None:
        return None
    return response.content.decode(errors="replace")
