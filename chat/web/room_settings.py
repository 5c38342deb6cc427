"""The room's settings page (`/rooms/<room>/settings/`), for its owner and staff: the form of
`chat.rooms.configuration`, shown again with each field's error when a value is refused. A
saved change is told to the room's members (`room.updated`), as `PATCH /api/rooms/<room>`
tells them."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from chat.background import detached
from chat.identity import Identity, from_user, guest_from_session, new_guest
from chat.protocol import ProtocolError
from chat.rooms import configuration
from chat.rooms.configuration import InvalidSettings, RoomSettingsForm
from chat.runtime import get_runtime
from chat.web.invites import notice
from chat.web.views import csp, page_config

# Error codes the page has its own words for, in both languages (i18n.js: settings.error.*).
TRANSLATED_ERRORS = frozenset(
    {
        "required",
        "max_length",
        "invalid_choice",
        "collection",
        "assistant_name",
        "min_value",
        "max_value",
        "invalid",
        "unicode",
    }
)


def _identity(request: HttpRequest) -> Identity:
    return from_user(request.user) or guest_from_session(request.session) or new_guest()


def _refused(request: HttpRequest, identity: Identity, err: ProtocolError) -> HttpResponse:
    if err.code == "forbidden":
        return notice(
            request,
            identity,
            key="settings.notAllowed",
            message="Only the room's owner can change its settings.",
            status=403,
        )
    return notice(
        request, identity, key="notice.notFound", message="There is no such room.", status=404
    )


def _errors(form: RoomSettingsForm) -> dict[str, list[dict[str, str]]]:
    """Each field's errors as the template shows them: the English message, and the page's
    i18n key with its arguments when the page has words for that code."""
    shown: dict[str, list[dict[str, str]]] = {}
    for field, errors in form.errors.as_data().items():
        shown[field] = [
            {
                "key": f"settings.error.{error.code}" if error.code in TRANSLATED_ERRORS else "",
                "args": json.dumps({k: str(v) for k, v in (error.params or {}).items()}),
                "message": " ".join(error.messages),
            }
            for error in errors
        ]
    return shown


def _page(
    request: HttpRequest, room: str, identity: Identity, form: RoomSettingsForm, status: int
) -> HttpResponse:
    context: dict[str, Any] = {
        "room": room,
        "form": form,
        "errors": _errors(form) if form.is_bound else {},
        "models": configuration.model_choices(),
        "identity": identity,
        "page_config": page_config(request, identity, room=room),
    }
    return render(request, "room_settings.html", context, status=status)


@require_http_methods(["GET", "POST"])
@csp
async def room_settings(request: HttpRequest, room: str) -> HttpResponseBase:
    """GET: the form, filled in. POST: save, tell the members, back to the room; or the form
    again (400) with what is wrong with each field."""
    identity = await sync_to_async(_identity)(request)
    if request.method == "POST":
        changes = {
            **request.POST.dict(),
            # Unchecked boxes are not sent at all.
            "allow_guests": "allow_guests" in request.POST,
            "use_shared_knowledge": "use_shared_knowledge" in request.POST,
        }
        changes.pop("csrfmiddlewaretoken", None)
        try:
            done = await sync_to_async(configuration.update_settings)(room, identity, changes)
        except InvalidSettings as err:
            return await sync_to_async(_page)(request, room, identity, err.form, 400)
        except ProtocolError as err:
            return await sync_to_async(_refused)(request, identity, err)
        if done.changed:
            runtime = await detached(get_runtime())
            info = configuration.public_info(done.room, room)
            await detached(runtime.room_updated(room, info))
        return redirect("room", room=room)
    try:
        form = await sync_to_async(configuration.settings_form)(room, identity)
    except ProtocolError as err:
        return await sync_to_async(_refused)(request, identity, err)
    return await sync_to_async(_page)(request, room, identity, form, 200)
