"""The admin (staff only, as Django's admin is): rooms with their owner, members and invites,
messages, API tokens. A room's settings are checked by the same form as the settings page, and
a change is told to the room's members (`room.updated`) as the page and the API tell them."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import HttpRequest

from chat.background import detached
from chat.models import ApiToken, FeedbackCount, Invite, Message, Room, RoomMembership
from chat.rooms.configuration import RoomSettingsForm, public_info
from chat.runtime import get_runtime

logger = logging.getLogger(__name__)


class RoomMembershipInline(admin.TabularInline):
    model = RoomMembership
    raw_id_fields = ("user",)
    readonly_fields = ("created",)
    extra = 0


class InviteInline(admin.TabularInline):
    """Invites can be seen and withdrawn (deleted) here; they are made from the room page."""

    model = Invite
    fields = ("created_by", "created", "expires", "max_uses", "uses")
    readonly_fields = ("created_by", "created", "uses")
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RoomAdminForm(RoomSettingsForm):
    """The settings page's checks, plus what only the admin changes."""

    class Meta(RoomSettingsForm.Meta):
        fields = ("name", "owner", *RoomSettingsForm.Meta.fields)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    form = RoomAdminForm
    list_display = ("name", "title", "owner", "visibility", "allow_guests", "last_activity")
    list_filter = ("visibility", "allow_guests")
    search_fields = ("name", "title", "owner__username")
    raw_id_fields = ("owner",)
    readonly_fields = ("created", "last_activity", "last_seq")
    inlines = (RoomMembershipInline, InviteInline)
    fieldsets = (
        (None, {"fields": ("name", "owner", "title", "description")}),
        ("Who gets in", {"fields": ("visibility", "allow_guests")}),
        (
            "The assistant",
            {"fields": ("assistant_name", "model", "temperature", "collection", "system_prompt")},
        ),
        ("Activity", {"fields": ("created", "last_activity", "last_seq")}),
    )

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and form.changed_data:
            info = public_info(obj, obj.name)
            transaction.on_commit(lambda: _announce(request, obj.name, info))


def _announce(request: HttpRequest, room: str, info: dict[str, Any]) -> None:
    """Tell the room's members (a `room.updated` event), from the worker's own event loop:
    only where the admin is served by the ASGI application, as daphne serves it."""
    if not isinstance(request, ASGIRequest):
        return

    async def announce() -> None:
        runtime = await detached(get_runtime())
        await detached(runtime.room_updated(room, info))

    try:
        async_to_sync(announce)()
    except Exception:
        logger.exception("Could not tell room %s that its settings changed", room)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "room", "role", "status", "user_name", "created")
    list_filter = ("role", "status")
    search_fields = ("id", "text", "user_name")
    raw_id_fields = ("question",)


@admin.register(FeedbackCount)
class FeedbackCountAdmin(admin.ModelAdmin):
    """The answers people gave the most 👎, first: with the documents their sources came from,
    these are the documents that need work. Read only: feedback is people's own."""

    list_display = ("answer_id", "room", "down", "up", "documents", "question", "answer_text")
    list_select_related = ("answer__room", "answer__question")
    ordering = ("-down", "up")
    search_fields = ("answer__text", "answer__question__text", "answer__room__name")
    list_filter = ("answer__room__name",)

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).exclude(up=0, down=0)

    @admin.display(description="room", ordering="answer__room__name")
    def room(self, obj: FeedbackCount) -> str:
        return obj.answer.room.name

    @admin.display(description="documents of its sources")
    def documents(self, obj: FeedbackCount) -> str:
        names = [
            str(source.get("source") or source.get("title") or "")
            for source in obj.answer.sources or []
            if isinstance(source, dict)
        ]
        return ", ".join(dict.fromkeys(name for name in names if name)) or "-"

    @admin.display(description="question")
    def question(self, obj: FeedbackCount) -> str:
        question = obj.answer.question
        return _excerpt(question.text if question is not None else "")

    @admin.display(description="answer")
    def answer_text(self, obj: FeedbackCount) -> str:
        return _excerpt(obj.answer.text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _excerpt(text: str, length: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued with `manage.py create_token` (the key is shown once); here they can
    be seen and revoked (deleted), never read back."""

    list_display = ("name", "user", "prefix", "created", "last_used")
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "created", "last_used")
    raw_id_fields = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
