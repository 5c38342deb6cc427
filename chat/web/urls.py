"""URLs of the web pages; included at the site root (`path("", include("chat.web.urls"))`)."""

from django.contrib.auth.views import LogoutView
from django.urls import path, register_converter

from chat.urlconverters import RoomNameConverter

from . import invites, room_settings, views

register_converter(RoomNameConverter, "room")

urlpatterns = [
    path("", views.home, name="home"),
    path("rooms/", views.enter_room, name="enter_room"),
    path("rooms/<room:room>/", views.room, name="room"),
    path("rooms/<room:room>/settings/", room_settings.room_settings, name="room_settings"),
    path("rooms/<room:room>/invites/", invites.create_invite, name="create_invite"),
    path("create-room/", views.create_room, name="create_room"),
    path("invites/<str:token>/", invites.invite, name="invite"),
    path("guest/", views.continue_as_guest, name="guest"),
    path(
        "accounts/login/",
        views.csp(views.LoginView.as_view()),
        name="login",
    ),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
]
