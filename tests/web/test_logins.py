"""Login throttling on the admin and the site's login (the hardening issue, "Logins"): after
CHAT_LOGIN_FAILURE_LIMIT wrong passwords for one account from one address, that address is
refused for that account, even with the right password, until the cool-off ends."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_superuser("boss", "boss@example.com", PASSWORD)


def attempt(client: Client, url: str, password: str) -> int:
    response = client.post(url, {"username": "boss", "password": password})
    return response.status_code


@pytest.mark.parametrize("url", ["/admin/login/", "/accounts/login/"])
def test_wrong_passwords_lock_the_account_out_from_that_address(
    admin_user: User, url: str, settings: Any
) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    attacker = Client(REMOTE_ADDR="203.0.113.50")
    # A wrong password is a form shown again (200), until the limit is reached.
    codes = [attempt(attacker, url, f"guess-{i}") for i in range(limit + 3)]
    assert codes[: limit - 1] == [200] * (limit - 1)
    assert set(codes[limit:]) == {429}
    # Locked out: even the right password is refused from there...
    assert attempt(attacker, url, PASSWORD) == 429
    # ...but the person, from their own address, logs in.
    owner = Client(REMOTE_ADDR="198.51.100.20")
    assert attempt(owner, url, PASSWORD) == 302


def test_a_success_before_the_limit_resets_the_count(admin_user: User, settings: Any) -> None:
    person = Client(REMOTE_ADDR="198.51.100.21")
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(person, "/accounts/login/", f"typo-{i}") == 200
    assert attempt(person, "/accounts/login/", PASSWORD) == 302
    person.logout()
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(person, "/accounts/login/", f"typo-again-{i}") == 200
    assert attempt(person, "/accounts/login/", PASSWORD) == 302
