"""Who is talking: a logged-in Django user, or a guest with a generated name kept in the
session (where settings.CHAT_ALLOW_GUESTS allows)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings

GUEST_SESSION_KEY = "chat_guest"

_ADJECTIVES = [
    "Amber",
    "Brave",
    "Calm",
    "Clever",
    "Gentle",
    "Happy",
    "Jolly",
    "Kind",
    "Lucky",
    "Merry",
    "Quiet",
    "Rapid",
    "Sunny",
    "Swift",
    "Witty",
    "Bright",
]
_ANIMALS = [
    "Otter",
    "Panda",
    "Falcon",
    "Badger",
    "Heron",
    "Koala",
    "Lynx",
    "Marten",
    "Puffin",
    "Quokka",
    "Robin",
    "Seal",
    "Tiger",
    "Walrus",
    "Yak",
    "Zebra",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """A member as the protocol shows it (`{"id", "name"}`), plus what permissions need."""

    id: str
    name: str
    is_staff: bool = False
    is_guest: bool = False
    # False for a guest made for this connection or request alone (no session brought it):
    # a script can be such a new person at every try, so it may not vote (chat.history).
    lasting: bool = True

    def to_wire(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}

    @property
    def user_pk(self) -> int | None:
        """The Django user's primary key of a signed-in person (`u:<pk>`); None for a guest."""
        if self.is_guest or not self.id.startswith("u:"):
            return None
        try:
            return int(self.id[2:])
        except ValueError:
            return None


def new_guest() -> Identity:
    """A new guest, for this connection or request only (`lasting` False) until a session
    keeps it (`ensure_guest`, then `guest_from_session` on the next request)."""
    tag = secrets.token_hex(4)
    name = f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_ANIMALS)} {tag[:3]}"
    return Identity(id=f"g:{tag}", name=name, is_guest=True, lasting=False)


def from_user(user: Any) -> Identity | None:
    if user is not None and getattr(user, "is_authenticated", False):
        name = user.get_full_name() or user.get_username()
        return Identity(id=f"u:{user.pk}", name=name, is_staff=bool(user.is_staff))
    return None


def guest_from_session(session: Any) -> Identity | None:
    data = session.get(GUEST_SESSION_KEY) if session is not None else None
    if (
        isinstance(data, dict)
        and isinstance(data.get("id"), str)
        and isinstance(data.get("name"), str)
    ):
        return Identity(id=data["id"], name=data["name"], is_guest=True)
    return None


def ensure_guest(session: Any) -> Identity:
    """Return the session's guest, creating (and storing) one on first use."""
    guest = guest_from_session(session)
    if guest is None:
        guest = new_guest()
        session[GUEST_SESSION_KEY] = {"id": guest.id, "name": guest.name}
    return guest


def resolve(user: Any, session: Any) -> Identity | None:
    """The identity of a request or WebSocket scope, or None when login is required.

    A guest kept in the session wins over a fresh one; a client without a session (a program)
    gets a new guest for this connection only.
    """
    identity = from_user(user)
    if identity is not None:
        return identity
    if not settings.CHAT_ALLOW_GUESTS:
        return None
    return guest_from_session(session) or new_guest()
