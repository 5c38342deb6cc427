from django.contrib import admin
from django.http import HttpRequest

from chat.models import ApiToken, Message, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "collection", "created", "last_activity", "last_seq")
    search_fields = ("name",)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "room", "role", "status", "user_name", "created")
    list_filter = ("role", "status")
    search_fields = ("id", "text", "user_name")
    raw_id_fields = ("question",)


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
