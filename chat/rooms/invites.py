"""Invite links. The owner or a moderator makes one, expiring, with a use limit; a signed-in
person who opens it and joins becomes a member of the room.

A link carries its row's id, signed (`django.core.signing`, salt `chat.invite`): a changed
token is refused, and nobody can guess one. The row says until when and how many times it
admits someone, so deleting it (the admin) revokes the link. Uses are counted with one
conditional UPDATE, so a limit holds however many people accept at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from chat.identity import Identity
from chat.models import Invite, Room, RoomMembership
from chat.protocol import ProtocolError

from . import access_and_room, role_of

SALT: Final = "chat.invite"
# How long a new link works, and how many people it admits: the page's choices.
EXPIRIES: Final[dict[str, timedelta]] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
}
DEFAULT_EXPIRY: Final = "1d"
MAX_USES: Final = (1, 5, 25)
DEFAULT_MAX_USES: Final = 1

State = Literal["open", "expired", "used_up", "gone"]


def token_for(invite: Invite) -> str:
    """The token of an invite's link: its id, signed."""
    return signing.dumps(invite.pk, salt=SALT)


def invite_id(token: str) -> int | None:
    """The invite id a token carries, or None when it was not made here or was changed."""
    try:
        value = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class InviteUnusable(ProtocolError):
    """An invite that admits nobody any more: `state` says why (`expired`, `used_up`, or
    `gone`: changed, deleted, never made)."""

    def __init__(self, state: State) -> None:
        messages = {
            "expired": "This invite has expired.",
            "used_up": "This invite has been used as many times as it allows.",
            "gone": "There is no such invite.",
        }
        super().__init__("not_found", messages[state])
        self.state = state


@dataclass(frozen=True, slots=True)
class InviteView:
    """What an invite's page shows to the person who opened it."""

    state: State
    room: str = ""
    title: str = ""
    description: str = ""
    invited_by: str = ""
    expires: datetime | None = None
    already_in: bool = False  # the person is in the room already: joining changes nothing


def create_invite(
    name: str, identity: Identity, *, expiry: str = DEFAULT_EXPIRY, max_uses: int = 1
) -> Invite:
    """A new invite to the room `name`, by its owner, a moderator or staff (`ProtocolError`:
    `not_found` for outsiders of a private room, `forbidden` for other members, `invalid` for
    an expiry or a use limit that is not one of the choices)."""
    access, room = access_and_room(name, identity)
    access.check_moderate()
    if expiry not in EXPIRIES:
        raise ProtocolError("invalid", f"`expires` is one of {', '.join(EXPIRIES)}.")
    if max_uses not in MAX_USES:
        raise ProtocolError("invalid", f"`max_uses` is one of {', '.join(map(str, MAX_USES))}.")
    if room is None:  # staff, in a room nobody made yet: it gets its row
        room, _ = Room.objects.get_or_create(name=name)
    return Invite.objects.create(
        room=room,
        created_by_id=identity.user_pk,
        expires=timezone.now() + EXPIRIES[expiry],
        max_uses=max_uses,
    )


def _state(invite: Invite | None) -> State:
    if invite is None:
        return "gone"
    if invite.expires <= timezone.now():
        return "expired"
    if invite.uses >= invite.max_uses:
        return "used_up"
    return "open"


def _find(token: str) -> Invite | None:
    pk = invite_id(token)
    if pk is None:
        return None
    return Invite.objects.select_related("room", "created_by").filter(pk=pk).first()


def look_up(token: str, identity: Identity) -> InviteView:
    """What the invite behind `token` would do for `identity` (nothing is changed)."""
    invite = _find(token)
    state = _state(invite)
    if invite is None or state != "open":
        return InviteView(state=state)
    room = invite.room
    return InviteView(
        state=state,
        room=room.name,
        title=room.title or room.name,
        description=room.description,
        invited_by=invite.created_by.get_username() if invite.created_by else "",
        expires=invite.expires,
        already_in=role_of(room, identity) is not None,
    )


class _AlreadyIn(Exception):
    """Raised inside the transaction to undo a use counted for someone already in."""


def accept(token: str, identity: Identity) -> str:
    """Make `identity` a member of the invite's room and count the use; returns the room's
    name. Someone already in the room stays as they are (owner, moderator or member) and uses
    nothing. `forbidden` for a guest (guests never join: private rooms never admit them);
    `InviteUnusable` for an expired, used-up, changed or deleted invite."""
    if identity.user_pk is None:
        raise ProtocolError("forbidden", "Sign in to accept an invite.")
    invite = _find(token)
    if invite is None:
        raise InviteUnusable("gone")
    room = invite.room
    if role_of(room, identity) is not None:
        return room.name
    try:
        with transaction.atomic():
            # One conditional UPDATE: under concurrent accepts the database serialises them
            # on the row, and each sees the uses the others counted.
            counted = Invite.objects.filter(
                pk=invite.pk, uses__lt=F("max_uses"), expires__gt=timezone.now()
            ).update(uses=F("uses") + 1)
            if not counted:
                raise InviteUnusable(_state(Invite.objects.filter(pk=invite.pk).first()))
            try:
                with transaction.atomic():
                    RoomMembership.objects.create(
                        room=room, user_id=identity.user_pk, role=RoomMembership.Role.MEMBER
                    )
            except IntegrityError:
                raise _AlreadyIn from None  # joined a moment ago (a double click)
    except _AlreadyIn:
        pass
    return room.name
