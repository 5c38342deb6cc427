"""URLs of the web pages; included at the site root (`path("", include("chat.web.urls"))`)."""

from django.contrib.auth.views import LogoutView
from django.urls import path, re_path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("rooms/", views.enter_room, name="enter_room"),
    re_path(r"^rooms/(?P<room>[A-Za-z0-9_-]{1,64})/$", views.room, name="room"),
    path("guest/", views.continue_as_guest, name="guest"),
    path(
        "accounts/login/",
        views.csp(views.LoginView.as_view()),
        name="login",
    ),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
]
