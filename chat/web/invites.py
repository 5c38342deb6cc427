"""Invite pages: making an invite link (the room page's panel), and opening one.

An invite is opened while signed in (anyone else is sent to log in, then back); its page shows
the room and a "Join" button, a POST that makes the person a member and takes them to the
room. An invite that admits nobody any more gets a page that says why: `410 Gone` when it
expired or was used up, `404` when it was changed, deleted or never made.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from chat.identity import Identity, from_user, guest_from_session, new_guest
from chat.protocol import ProtocolError
from chat.rooms import invites
from chat.web.views import csp, page_config

# A refused request's HTTP status, by the refusal's code.
STATUS_BY_CODE = {"invalid": 400, "forbidden": 403, "not_found": 404}
# An unusable invite's page: its HTTP status and its message (an i18n key of the page).
UNUSABLE = {
    "expired": (410, "invite.expired"),
    "used_up": (410, "invite.usedUp"),
    "gone": (404, "invite.gone"),
}


def notice(
    request: HttpRequest,
    identity: Identity | None,
    *,
    key: str,
    message: str,
    status: int,
    title_key: str = "notice.title",
) -> HttpResponse:
    """A page with one message (English, rewritten into the page's language by its script)."""
    context = {
        "identity": identity,
        "title_key": title_key,
        "message_key": key,
        "message": message,
        "page_config": page_config(request, identity),
    }
    return render(request, "notice.html", context, status=status)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_POST
@csp
def create_invite(request: HttpRequest, room: str) -> HttpResponseBase:
    """Make an invite link to `room` (its owner, a moderator, staff): the room page's panel
    posts here (CSRF-protected like every form) and shows the link. JSON for the panel's
    script (`Accept: application/json`), else a page with the link."""
    identity = from_user(request.user) or guest_from_session(request.session) or new_guest()
    try:
        max_uses = int(request.POST.get("max_uses", invites.DEFAULT_MAX_USES))
    except ValueError:
        max_uses = 0
    try:
        invite = invites.create_invite(
            room,
            identity,
            expiry=request.POST.get("expires", invites.DEFAULT_EXPIRY),
            max_uses=max_uses,
        )
    except ProtocolError as err:
        status = STATUS_BY_CODE.get(err.code, 400)
        if _wants_json(request):
            return JsonResponse(
                {"error": {"code": err.code, "message": err.message}}, status=status
            )
        key = {403: "invite.notAllowed", 404: "notice.notFound"}.get(status, "invite.badChoice")
        return notice(request, identity, key=key, message=err.message, status=status)
    url = request.build_absolute_uri(reverse("invite", args=[invites.token_for(invite)]))
    created: dict[str, Any] = {
        "url": url,
        "expires": invite.expires.isoformat().replace("+00:00", "Z"),
        "max_uses": invite.max_uses,
    }
    if _wants_json(request):
        return JsonResponse(created, status=201)
    context = {
        **created,
        "room": room,
        "invite": invite,
        "identity": identity,
        "page_config": page_config(request, identity),
    }
    return render(request, "invite_created.html", context, status=201)


@require_http_methods(["GET", "POST"])
@csp
def invite(request: HttpRequest, token: str) -> HttpResponseBase:
    """An invite link: GET shows the room and "Join"; POST joins and goes to the room."""
    identity = from_user(request.user)
    if identity is None:
        if request.method == "POST" and guest_from_session(request.session) is not None:
            return notice(
                request,
                guest_from_session(request.session),
                key="invite.signIn",
                message="Sign in to accept an invite: guests cannot join rooms.",
                status=403,
            )
        return redirect_to_login(reverse("invite", args=[token]))
    if request.method == "POST":
        try:
            room = invites.accept(token, identity)
        except invites.InviteUnusable as err:
            return _unusable(request, identity, err.state)
        return redirect("room", room=room)
    view = invites.look_up(token, identity)
    if view.state != "open":
        return _unusable(request, identity, view.state)
    context = {
        "token": token,
        "invite": view,
        "identity": identity,
        "page_config": page_config(request, identity),
    }
    return render(request, "invite.html", context)


def _unusable(request: HttpRequest, identity: Identity, state: str) -> HttpResponse:
    status, key = UNUSABLE.get(state, UNUSABLE["gone"])
    return notice(
        request,
        identity,
        key=key,
        message=UNUSABLE_ENGLISH[key],
        status=status,
        title_key="invite.unusableTitle",
    )


UNUSABLE_ENGLISH = {
    "invite.expired": "This invite has expired. Ask whoever sent it for a new one.",
    "invite.usedUp": (
        "This invite has been used as many times as it allows. Ask whoever sent it for a new one."
    ),
    "invite.gone": "This invite link is not valid: it was changed, or it was withdrawn.",
}
