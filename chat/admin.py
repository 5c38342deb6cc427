from django.contrib import admin

from chat.models import Message, Room


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
