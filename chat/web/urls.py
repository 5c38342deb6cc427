"""URLs of the web pages; included at the site root (`path("", include("chat.web.urls"))`)."""

from django.contrib.auth.views import LogoutView
from django.urls import path, register_converter

from chat.urlconverters import RoomNameConverter

from . import views

register_converter(RoomNameConverter, "room")

urlpatterns = [
    path("", views.home, name="home"),
    path("rooms/", views.enter_room, name="enter_room"),
    path("rooms/<room:room>/", views.room, name="room"),
    path("guest/", views.continue_as_guest, name="guest"),
    path(
        "accounts/login/",
        views.csp(views.LoginView.as_view()),
        name="login",
    ),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
]
