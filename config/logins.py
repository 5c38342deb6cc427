"""Who is trying to log in, for django-axes' throttling (settings, "Logins")."""

from __future__ import annotations

from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's address as the server knows it: daphne's (the proxy's `X-Forwarded-For`
    under `--proxy-headers`), never a header the client could set itself."""
    address = request.META.get("REMOTE_ADDR")
    return str(address) if address else None
