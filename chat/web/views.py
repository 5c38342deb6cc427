"""Views of the web pages. They only render templates and manage the session's identity; the
room itself is the WebSocket (protocol v1), driven by frontend/static/chat/js/room.js."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from chat import rooms
from chat.background import detached
from chat.identity import Identity, ensure_guest, from_user, guest_from_session, new_guest
from chat.models import Room
from chat.protocol import ROOM_NAME_PATTERN, ProtocolError, is_room_name
from chat.retrieval.loaders import SUPPORTED_SUFFIXES
from chat.rooms.configuration import public_info
from chat.runtime import get_runtime

logger = logging.getLogger(__name__)

RECENT_ROOMS = 20
MY_ROOMS = 50

View = Callable[..., Any]


def content_security_policy(request: HttpRequest) -> str:
    """The pages' CSP: scripts, styles and images only from this site, WebSocket to this host.

    A second line of defence behind the Markdown sanitiser: even an injected inline script or
    `onerror=` handler cannot run, and answers cannot load remote images (tracking pixels).
    """
    host = request.get_host()
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def csp(view: View) -> View:
    """Add the Content-Security-Policy header to a view's response (unless it has one); the
    view may be sync or async."""

    def with_csp(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(request)
        return response

    if iscoroutinefunction(view):

        @wraps(view)
        async def async_wrapped(
            request: HttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            return with_csp(request, await view(request, *args, **kwargs))

        return async_wrapped

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return with_csp(request, view(request, *args, **kwargs))

    return wrapped


def current_identity(request: HttpRequest) -> Identity | None:
    """The logged-in user, else the session's guest (if one was created), else None."""
    return from_user(request.user) or guest_from_session(request.session)


def page_config(request: HttpRequest, identity: Identity | None, **extra: Any) -> dict[str, Any]:
    """Data for the page's scripts, rendered with `json_script` (no inline script)."""
    return {
        "languageCode": settings.LANGUAGE_CODE,
        "me": identity.to_wire() if identity else None,
        "isGuest": bool(identity and identity.is_guest),
        "allowGuests": settings.CHAT_ALLOW_GUESTS,
        "urls": {"home": reverse("home"), "login": reverse("login")},
        # The server's room-name rule, so the page checks names exactly as the server does.
        "roomNamePattern": ROOM_NAME_PATTERN,
        **extra,
    }


def _room_lists(
    identity: Identity | None,
) -> tuple[list[tuple[Room, rooms.RoleName]], list[Room]]:
    """The rooms `identity` belongs to (with their role), and the public rooms."""
    mine = rooms.rooms_of(identity, MY_ROOMS) if identity is not None else []
    return mine, rooms.public_rooms(RECENT_ROOMS)


async def _live_counts(request: HttpRequest, names: list[str]) -> dict[str, int]:
    """How many people are in each room now, from the coordinator's presence (one call each:
    the page lists 20 at most). Only where the page is served by the ASGI application, in the
    worker's own event loop, where its runtime lives (Django's WSGI test client runs async
    views in a loop of their own: no counts there). The page does without them when the
    coordinator (Redis) cannot answer."""
    if not names or not isinstance(request, ASGIRequest):
        return {}
    try:
        runtime = await detached(get_runtime())
        members = await asyncio.gather(*(runtime.coordinator.members(n) for n in names))
    except Exception as err:
        logger.warning("No member counts for the home page: %r", err)
        return {}
    return {name: len(people) for name, people in zip(names, members, strict=True)}


async def _home(
    request: HttpRequest,
    *,
    room_error: str = "",
    create_error: str = "",
    create_values: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    identity = await sync_to_async(current_identity)(request)
    mine, public = await sync_to_async(_room_lists)(identity)
    counts = await _live_counts(request, [room.name for room in public])
    context = {
        "identity": identity,
        "signed_in": identity is not None and not identity.is_guest,
        "my_rooms": [{"room": room, "role": role} for room, role in mine],
        "public_rooms": [{"room": room, "count": counts.get(room.name)} for room in public],
        "allow_guests": settings.CHAT_ALLOW_GUESTS,
        "room_error": room_error,
        "room_value": request.GET.get("name", "") if room_error else "",
        "create_error": create_error,
        "create": create_values or {"name": "", "title": "", "visibility": "public"},
        "page_config": page_config(request, identity),
    }
    return await sync_to_async(render)(request, "home.html", context, status=status)


@require_GET
@csp
async def home(request: HttpRequest) -> HttpResponse:
    """The rooms I belong to, public rooms with how many people are in them, entering a room
    by name, creating one (signed in), logging in or continuing as a guest."""
    return await _home(request)


@require_GET
@csp
async def enter_room(request: HttpRequest) -> HttpResponse:
    """The home form's target without JavaScript: validate the name and go to the room."""
    name = request.GET.get("name", "").strip()
    if not is_room_name(name):
        return await _home(request, room_error="invalid", status=400)
    return redirect("room", room=name)


# A refused room creation: the home page's message (an i18n key) and HTTP status, by code.
CREATE_ERRORS = {
    "invalid": ("home.createInvalid", 400),
    "conflict": ("home.createTaken", 409),
}


@require_POST
@csp
async def create_room(request: HttpRequest) -> HttpResponseBase:
    """ "Create a room" on the home page: the signed-in person owns the new room. A bad or
    taken name shows the form again with its message."""
    identity = await sync_to_async(from_user)(request.user)
    if identity is None:
        return redirect_to_login(reverse("home"))
    values = {
        "name": request.POST.get("name", "").strip(),
        "title": " ".join(request.POST.get("title", "").replace("\x00", "").split())[
            : rooms.MAX_TITLE_CHARS
        ],
        "visibility": request.POST.get("visibility", Room.Visibility.PUBLIC),
    }
    try:
        await sync_to_async(rooms.create_room)(
            values["name"], identity, visibility=values["visibility"], title=values["title"]
        )
    except ProtocolError as err:
        key, status = CREATE_ERRORS.get(err.code, ("home.createInvalid", 400))
        return await _home(request, create_error=key, create_values=values, status=status)
    return redirect("room", room=values["name"])


def _size(size: int) -> str:
    """A size as the page shows it: "10 MB", "1.5 MB", "256 KB"."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
    return f"{max(1, round(size / 1024))} KB"


@require_GET
@csp
def room(request: HttpRequest, room: str) -> HttpResponse:
    """The room page. An anonymous visitor becomes the session's guest here (when guests are
    allowed) so that the WebSocket, which carries the session cookie, has a stable identity."""
    identity = from_user(request.user)
    if identity is None and not settings.CHAT_ALLOW_GUESTS:
        return redirect_to_login(request.get_full_path())
    if identity is None:
        identity = guest_from_session(request.session)
    # A private room (or one that removed you) is a 404, like a room that is not there.
    access, row = rooms.access_and_room(room, identity or new_guest())
    if not access.may_enter:
        raise Http404("no such room")
    if identity is None:
        identity = ensure_guest(request.session)
    info = public_info(row, room)
    config = page_config(
        request,
        identity,
        room=room,
        wsPath=f"/ws/rooms/{room}/",
        maxChars=settings.CHAT_MAX_QUESTION_CHARS,
        maxMessageChars=settings.CHAT_MAX_MESSAGE_CHARS,
        # `@name` at the start of a message asks the assistant (blank: its default names).
        assistantName=row.assistant_name if row is not None else "",
        roomInfo=info,
        access={
            "role": access.role,
            "mayModerate": access.may_moderate,
            "mayConfigure": access.may_configure,
        },
        documentsPath=f"/api/rooms/{room}/documents",
        documentMaxBytes=settings.CHAT_DOCUMENT_MAX_BYTES,
    )
    context = {
        "room": room,
        "info": info,
        "access": access,
        "identity": identity,
        "page_config": config,
        "document_types": sorted(SUPPORTED_SUFFIXES),
        "document_max_size": _size(settings.CHAT_DOCUMENT_MAX_BYTES),
    }
    return render(request, "room.html", context)


@require_POST
def continue_as_guest(request: HttpRequest) -> HttpResponse:
    """Create the session's guest identity, then go back to `next` (a local URL) or home."""
    if not settings.CHAT_ALLOW_GUESTS:
        return redirect_to_login(reverse("home"))
    if from_user(request.user) is None:
        ensure_guest(request.session)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("home")
    return HttpResponseRedirect(target)


class LoginView(auth_views.LoginView):
    """Django's login view with the page's config and the "continue as guest" choice."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # An invite is for signed-in people: no "continue as guest" on the way to one.
        to_invite = str(context.get("next", "")).startswith(reverse("invite", args=["x"])[:-2])
        context["allow_guests"] = settings.CHAT_ALLOW_GUESTS and not to_invite
        context["page_config"] = page_config(self.request, current_identity(self.request))
        return context
