"""The page views through Django's test client (no browser): routing, identity, redirects,
the page config and the Content-Security-Policy. Fast; they need no Chromium."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.identity import GUEST_SESSION_KEY
from chat.models import Room

pytestmark = pytest.mark.django_db


def page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html)
    assert match, "no page config"
    return json.loads(match.group(1))


def test_urls_have_the_agreed_names() -> None:
    assert reverse("home") == "/"
    assert reverse("room", kwargs={"room": "lobby"}) == "/rooms/lobby/"
    assert reverse("login") == "/accounts/login/"
    assert reverse("logout") == "/accounts/logout/"
    assert reverse("guest") == "/guest/"


def test_home_lists_the_20_most_recent_rooms(client: Client) -> None:
    now = timezone.now()
    for i in range(25):
        room = Room.objects.create(name=f"room-{i}")
        Room.objects.filter(pk=room.pk).update(last_activity=now - timedelta(minutes=i))
    html = client.get("/").content.decode()
    names = re.findall(r'<span class="room-name">([^<]+)</span>', html)
    assert names == [f"room-{i}" for i in range(20)]


def test_anonymous_visitor_becomes_a_stable_guest_on_the_room_page(client: Client) -> None:
    first = client.get("/rooms/lobby/")
    assert first.status_code == 200
    guest = client.session[GUEST_SESSION_KEY]
    config = page_config(first.content.decode())
    assert config["me"] == {"id": guest["id"], "name": guest["name"]}
    assert config["wsPath"] == "/ws/rooms/lobby/"
    assert config["room"] == "lobby"
    assert config["maxChars"] == 4000
    client.get("/rooms/other/")
    assert client.session[GUEST_SESSION_KEY] == guest


def test_the_room_page_knows_the_limits_and_what_the_room_calls_its_assistant(
    client: Client, settings: Any
) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 1234
    config = page_config(client.get("/rooms/lobby/").content.decode())
    assert config["maxMessageChars"] == 1234
    assert config["assistantName"] == ""  # no row yet: the default names
    Room.objects.create(name="bakery", assistant_name="빵집봇")
    config = page_config(client.get("/rooms/bakery/").content.decode())
    assert config["assistantName"] == "빵집봇"


def test_room_page_redirects_to_login_when_guests_are_not_allowed(
    client: Client, settings: Any
) -> None:
    settings.CHAT_ALLOW_GUESTS = False
    response = client.get("/rooms/lobby/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/rooms/lobby/"
    assert "Continue as guest" not in client.get("/").content.decode()


def test_logged_in_user_is_the_identity(client: Client, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("minji", password="pw-12345678")
    client.force_login(user)
    config = page_config(client.get("/rooms/lobby/").content.decode())
    assert config["me"] == {"id": f"u:{user.pk}", "name": "minji"}
    assert GUEST_SESSION_KEY not in client.session


def test_bad_room_names_are_refused(client: Client) -> None:
    assert client.get("/rooms/has space/").status_code == 404
    assert client.get("/rooms/" + "x" * 65 + "/").status_code == 404
    refused = client.get("/rooms/", {"name": "no/slash"})
    assert refused.status_code == 400
    assert 'id="room-error"' in refused.content.decode()
    assert client.get("/rooms/", {"name": " ok-Room_1 "})["Location"] == "/rooms/ok-Room_1/"


def test_continue_as_guest_goes_back_to_a_local_next_only(client: Client) -> None:
    assert client.get("/guest/").status_code == 405
    response = client.post("/guest/", {"next": "/rooms/lobby/"})
    assert response["Location"] == "/rooms/lobby/"
    assert GUEST_SESSION_KEY in client.session
    assert client.post("/guest/", {"next": "https://evil.example/"})["Location"] == "/"


def test_pages_send_a_csp_and_have_no_inline_scripts(client: Client) -> None:
    for url in ("/", "/rooms/lobby/", "/accounts/login/"):
        response = client.get(url)
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "connect-src 'self' ws://testserver wss://testserver" in csp
        for tag in re.findall(r"<script\b[^>]*>", response.content.decode()):
            assert 'type="application/json"' in tag or "src=" in tag, tag
        assert " style=" not in response.content.decode()


def test_login_and_logout(client: Client, django_user_model: Any) -> None:
    django_user_model.objects.create_user("minji", password="pw-12345678")
    page = client.get("/accounts/login/?next=/rooms/lobby/").content.decode()
    assert 'name="next" value="/rooms/lobby/"' in page
    response = client.post(
        "/accounts/login/",
        {"username": "minji", "password": "pw-12345678", "next": "/rooms/lobby/"},
    )
    assert response["Location"] == "/rooms/lobby/"
    assert "Signed in as minji" in client.get("/").content.decode()
    assert client.post("/accounts/logout/")["Location"] == "/"
    assert "You are not signed in." in client.get("/").content.decode()
