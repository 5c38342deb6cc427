"""Who may do what in a room: owners, moderators, members, visibility. Storage-level (it reads
the room's row and the person's role), synchronous like `chat.storage`: async callers wrap it
with `database_sync_to_async`.

The one rule, used by every transport (WebSocket, SSE, HTTP, the page, the commands):

- A room without a row (nothing was said in it yet, nobody created it) is public.
- A public room admits everyone the server lets in; guests only if the room allows them.
- A private room admits its owner, its moderators and members, and staff; nobody else, and it
  never confirms its name to anyone else (the transports answer as for a room that is not
  there: 404, or a refused handshake).
- Owner, moderators and staff moderate; the owner and staff change the room's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from django.db import IntegrityError, transaction

from chat.identity import Identity
from chat.models import Room, RoomMembership
from chat.protocol import ProtocolError, is_room_name

RoleName = Literal["owner", "moderator", "member"]
MAX_TITLE_CHARS: Final = 100  # Room.title's column
ROLES: Final = ("owner", "moderator", "member")


@dataclass(frozen=True, slots=True)
class Access:
    """What one person may do in one room, as the database says now."""

    room: str
    may_enter: bool
    role: RoleName | None = None  # their role in the room, if they have one
    is_staff: bool = False
    private: bool = False

    @property
    def may_moderate(self) -> bool:
        """Redact, stop any answer, remove members, make invites."""
        return self.may_enter and (self.is_staff or self.role in ("owner", "moderator"))

    @property
    def may_configure(self) -> bool:
        """Change the room's settings (title, visibility, model…)."""
        return self.may_enter and (self.is_staff or self.role == "owner")

    def check_enter(self) -> None:
        """Raise the error every transport shows for a room it will not show you: the same
        as for a room that is not there, so a private room's name is never confirmed."""
        if not self.may_enter:
            raise ProtocolError("not_found", "There is no such room.")

    def check_moderate(self) -> None:
        self.check_enter()
        if not self.may_moderate:
            raise ProtocolError("forbidden", "Only the room's owner or a moderator may do that.")

    def check_configure(self) -> None:
        self.check_enter()
        if not self.may_configure:
            raise ProtocolError("forbidden", "Only the room's owner may change its settings.")


def role_of(room: Room, identity: Identity) -> RoleName | None:
    """`identity`'s role in `room` (guests have none)."""
    user_pk = identity.user_pk
    if user_pk is None:
        return None
    if room.owner_id == user_pk:
        return "owner"
    role = (
        RoomMembership.objects.filter(room=room, user_id=user_pk)
        .values_list("role", flat=True)
        .first()
    )
    return "moderator" if role == RoomMembership.Role.MODERATOR else "member" if role else None


def access_to(room: Room | None, name: str, identity: Identity) -> Access:
    """`identity`'s access to the room `name` whose row is `room` (None: no row yet)."""
    if room is None:
        # Nothing said here yet, nobody made it: a public room anyone the server admits enters.
        return Access(room=name, may_enter=True, is_staff=identity.is_staff)
    role = role_of(room, identity)
    private = room.visibility == Room.Visibility.PRIVATE
    if identity.is_staff or role is not None:
        may_enter = True
    elif private:
        may_enter = False  # a private room: members only (never guests)
    else:
        may_enter = room.allow_guests or not identity.is_guest
    return Access(
        room=name, may_enter=may_enter, role=role, is_staff=identity.is_staff, private=private
    )


def access(name: str, identity: Identity) -> Access:
    """`identity`'s access to the room called `name`. A name the rule refuses is no room."""
    if not is_room_name(name):
        return Access(room=name, may_enter=False)
    return access_to(Room.objects.filter(name=name).first(), name, identity)


def create_room(
    name: str,
    owner: Identity,
    *,
    visibility: str = Room.Visibility.PUBLIC,
    title: str = "",
) -> Room:
    """Make a room owned by `owner` (a signed-in person); without a title, its name is its
    title. `ProtocolError`: `invalid` for a bad name, `forbidden` for a guest owner, `conflict`
    when the name is taken (said the same way whether the room taken is public or private: a
    private name was already not secret to its creator's choice of it, and refusing is the
    only way not to hand it over)."""
    if not is_room_name(name):
        raise ProtocolError("invalid", "A room name is 1 to 64 characters of A-Z a-z 0-9 _ -.")
    if owner.user_pk is None:
        raise ProtocolError("forbidden", "Sign in to create a room.")
    if visibility not in Room.Visibility.values:
        raise ProtocolError("invalid", "`visibility` is `public` or `private`.")
    if len(title) > MAX_TITLE_CHARS or "\x00" in title:
        raise ProtocolError("invalid", f"A title is at most {MAX_TITLE_CHARS} characters.")
    try:
        with transaction.atomic():
            return Room.objects.create(
                name=name, owner_id=owner.user_pk, visibility=visibility, title=title or name
            )
    except IntegrityError:
        raise ProtocolError("conflict", f"There is already a room called {name}.") from None


def my_rooms(identity: Identity, limit: int = 50) -> list[Room]:
    """The rooms `identity` owns or is a member of, most recently active first."""
    user_pk = identity.user_pk
    if user_pk is None:
        return []
    owned = Room.objects.filter(owner_id=user_pk)
    joined = Room.objects.filter(memberships__user_id=user_pk)
    rows = (owned | joined).distinct().order_by("-last_activity")[: limit * 2]
    return [room for room in rows if is_room_name(room.name)][:limit]


def public_rooms(limit: int = 20) -> list[Room]:
    """Public rooms, most recently active first: what the home page lists to everyone. A row
    with a name the rule refuses (left by an older version that matched names loosely) is
    skipped: the page links to every room it lists."""
    rows = Room.objects.filter(visibility=Room.Visibility.PUBLIC).order_by("-last_activity")
    return [room for room in rows[: limit * 2] if is_room_name(room.name)][:limit]


def rooms_of(identity: Identity, limit: int = 50) -> list[tuple[Room, RoleName]]:
    """The rooms `identity` owns or is a member of, with their role there, most recently
    active first (what the home page lists as "my rooms")."""
    user_pk = identity.user_pk
    if user_pk is None:
        return []
    found: dict[int, tuple[Room, RoleName]] = {
        room.pk: (room, "owner") for room in Room.objects.filter(owner_id=user_pk)[:limit]
    }
    memberships = RoomMembership.objects.filter(user_id=user_pk).select_related("room")
    for membership in memberships.order_by("-room__last_activity")[:limit]:
        role: RoleName = (
            "moderator" if membership.role == RoomMembership.Role.MODERATOR else "member"
        )
        found.setdefault(membership.room.pk, (membership.room, role))
    rows = sorted(found.values(), key=lambda pair: pair[0].last_activity, reverse=True)
    return [(room, role) for room, role in rows if is_room_name(room.name)][:limit]


def access_and_room(name: str, identity: Identity) -> tuple[Access, Room | None]:
    """`access`, and the room's row (None: none yet), in one trip to the database thread."""
    if not is_room_name(name):
        return Access(room=name, may_enter=False), None
    room = Room.objects.filter(name=name).first()
    return access_to(room, name, identity), room
