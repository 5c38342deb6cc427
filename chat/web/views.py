"""Views of the web pages. They only render templates and manage the session's identity; the
room itself is the WebSocket (protocol v1), driven by frontend/static/chat/js/room.js."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from chat import rooms, storage
from chat.identity import Identity, ensure_guest, from_user, guest_from_session, new_guest
from chat.protocol import ROOM_NAME_PATTERN, is_room_name

RECENT_ROOMS = 20

View = Callable[..., HttpResponseBase]


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
    """Add the Content-Security-Policy header to a view's response (unless it has one)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(request)
        return response

    return wrapped


def current_identity(request: HttpRequest) -> Identity | None:
    """The logged-in user, else the session's guest (if one was created), else None."""
    return from_user(request.user) or guest_from_session(request.session)


def _page_config(request: HttpRequest, identity: Identity | None, **extra: Any) -> dict[str, Any]:
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


def _home(request: HttpRequest, *, room_error: str = "", status: int = 200) -> HttpResponse:
    identity = current_identity(request)
    context = {
        "identity": identity,
        "recent_rooms": rooms.public_rooms(RECENT_ROOMS),
        "allow_guests": settings.CHAT_ALLOW_GUESTS,
        "room_error": room_error,
        "room_value": request.GET.get("name", "") if room_error else "",
        "page_config": _page_config(request, identity),
    }
    return render(request, "home.html", context, status=status)


@require_GET
@csp
def home(request: HttpRequest) -> HttpResponse:
    """Enter a room by name, see recent rooms, log in or continue as a guest."""
    return _home(request)


@require_GET
@csp
def enter_room(request: HttpRequest) -> HttpResponse:
    """The home form's target without JavaScript: validate the name and go to the room."""
    name = request.GET.get("name", "").strip()
    if not is_room_name(name):
        return _home(request, room_error="invalid", status=400)
    return redirect("room", room=name)


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
    access = rooms.access(room, identity or new_guest())
    if not access.may_enter:
        raise Http404("no such room")
    if identity is None:
        identity = ensure_guest(request.session)
    config = _page_config(
        request,
        identity,
        room=room,
        wsPath=f"/ws/rooms/{room}/",
        maxChars=settings.CHAT_MAX_QUESTION_CHARS,
        maxMessageChars=settings.CHAT_MAX_MESSAGE_CHARS,
        # `@name` at the start of a message asks the assistant (blank: its default names).
        assistantName=storage.assistant_name(room),
    )
    return render(request, "room.html", {"room": room, "identity": identity, "page_config": config})


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
        context["allow_guests"] = settings.CHAT_ALLOW_GUESTS
        context["page_config"] = _page_config(self.request, current_identity(self.request))
        return context
