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
from typing import Any, Final, Literal

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q

from chat.identity import Identity
from chat.models import Room, RoomMembership
from chat.protocol import ProtocolError, access_info, is_room_name

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

    def to_wire(self) -> dict[str, Any]:
        """The `welcome`'s `access` field."""
        return access_info(role=self.role, moderate=self.may_moderate, configure=self.may_configure)

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


def _membership(room: Room, user_pk: int | None, guest_id: str = "") -> str | None:
    """The person's row in the room: `owner`, a `RoomMembership.Role`, or None. A guest
    (`guest_id`) can only have been removed."""
    if user_pk is None:
        if not guest_id:
            return None
        return (
            RoomMembership.objects.filter(room=room, guest_id=guest_id)
            .values_list("role", flat=True)
            .first()
        )
    if room.owner_id == user_pk:
        return "owner"
    return (
        RoomMembership.objects.filter(room=room, user_id=user_pk)
        .values_list("role", flat=True)
        .first()
    )


def _role(row: str | None) -> RoleName | None:
    """A membership row's role; None for no row and for a removal."""
    if row == "owner":
        return "owner"
    if row == RoomMembership.Role.MODERATOR:
        return "moderator"
    if row == RoomMembership.Role.MEMBER:
        return "member"
    return None


def role_of(room: Room, identity: Identity) -> RoleName | None:
    """`identity`'s role in `room` (guests, and people removed from it, have none)."""
    return _role(_membership(room, identity.user_pk))


def access_to(room: Room | None, name: str, identity: Identity) -> Access:
    """`identity`'s access to the room `name` whose row is `room` (None: no row yet)."""
    if room is None:
        return _access(None, name, identity, None)
    row = _membership(room, identity.user_pk, identity.id if identity.is_guest else "")
    return _access(room, name, identity, row)


def accesses_to(
    entries: list[tuple[Room, Identity]], *, without_members: frozenset[int] = frozenset()
) -> list[Access]:
    """`access_to` for each (room row, person), with every membership row they need read in
    one query (a burst of asks checks its askers together). `without_members`: rooms known
    to have no membership rows (made in this transaction), not looked up."""
    wanted = Q(pk__in=[])  # matches nothing: the rooms' conditions are OR-ed onto it
    looked_up = False
    for room, identity in entries:
        if room.pk in without_members:
            continue
        user_pk = identity.user_pk
        if user_pk is None and identity.is_guest:
            wanted |= Q(room_id=room.pk, guest_id=identity.id)
            looked_up = True
        elif user_pk is not None and room.owner_id != user_pk:
            wanted |= Q(room_id=room.pk, user_id=user_pk)
            looked_up = True
    rows: dict[tuple[int, str], str] = {}
    if looked_up:
        for room_id, user_id, guest_id, role in RoomMembership.objects.filter(wanted).values_list(
            "room_id", "user_id", "guest_id", "role"
        ):
            rows[(room_id, f"u:{user_id}" if user_id is not None else guest_id)] = role
    found = []
    for room, identity in entries:
        user_pk = identity.user_pk
        row: str | None
        if user_pk is not None and room.owner_id == user_pk:
            row = "owner"
        elif user_pk is not None:
            row = rows.get((room.pk, f"u:{user_pk}"))
        else:
            row = rows.get((room.pk, identity.id)) if identity.is_guest else None
        found.append(_access(room, room.name, identity, row))
    return found


def _access(room: Room | None, name: str, identity: Identity, row: str | None) -> Access:
    """The rule itself, given the room's row and the person's membership row in it (`owner`,
    a `RoomMembership.Role`, or None): see the module docstring."""
    if room is None:
        # Nothing said here yet, nobody made it: a public room anyone the server admits enters.
        return Access(room=name, may_enter=True, is_staff=identity.is_staff)
    role = _role(row)
    private = room.visibility == Room.Visibility.PRIVATE
    if identity.is_staff or role is not None:
        may_enter = True
    elif row == RoomMembership.Role.REMOVED:
        may_enter = False  # removed by a moderator: not even a public room takes them back
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
    joined = Room.objects.filter(
        memberships__user_id=user_pk,
        memberships__role__in=[RoomMembership.Role.MODERATOR, RoomMembership.Role.MEMBER],
    )
    rows = (owned | joined).distinct().order_by("-last_activity")[: limit * 2]
    return [room for room in rows if is_room_name(room.name)][:limit]


def public_rooms(limit: int = 20) -> list[Room]:
    """Public rooms, most recently active first: what the home page lists to everyone. A row
    with a name the rule refuses (left by an older version that matched names loosely) is
    skipped: the page links to every room it lists."""
    rows = Room.objects.filter(visibility=Room.Visibility.PUBLIC).order_by("-last_activity")
    return [room for room in rows[: limit * 2] if is_room_name(room.name)][:limit]


def remove_member(name: str, moderator: Identity, user_id: str) -> None:
    """Remove the person `user_id` (`u:<pk>` or `g:<hex>`) from the room, for good: a
    signed-in person gets a `removed` row, which keeps them out even of a public room (until
    the owner or a moderator adds them again). So does a guest, by the guest id their browser
    session keeps; but a guest is a new identity at will (a new session), so only turning
    guests off keeps guests out for sure. The owner cannot be removed; only the owner (or
    staff) removes a moderator."""
    room = Room.objects.filter(name=name).first()
    access_to(room, name, moderator).check_moderate()
    if user_id == moderator.id:
        raise ProtocolError("invalid", "You cannot remove yourself.")
    if room is None:
        room, _ = Room.objects.get_or_create(name=name)
    if not user_id.startswith("u:"):
        RoomMembership.objects.get_or_create(
            room=room, guest_id=user_id, defaults={"role": RoomMembership.Role.REMOVED}
        )
        return
    user_pk = _person(user_id)
    row = _membership(room, user_pk)
    if row == "owner":
        raise ProtocolError("forbidden", "The room's owner cannot be removed.")
    if row == RoomMembership.Role.MODERATOR and not access_to(room, name, moderator).may_configure:
        raise ProtocolError("forbidden", "Only the room's owner may remove a moderator.")
    RoomMembership.objects.update_or_create(
        room=room, user_id=user_pk, defaults={"role": RoomMembership.Role.REMOVED}
    )


def _person(user_id: str) -> int:
    """The user pk of a signed-in person's id (`u:<pk>`), or `not_found`."""
    user_pk = int(user_id[2:]) if user_id.startswith("u:") and user_id[2:].isdigit() else None
    if user_pk is None or not get_user_model().objects.filter(pk=user_pk).exists():
        raise ProtocolError(
            "not_found", "There is no such person (only signed-in people have roles)."
        )
    return user_pk


def set_role(name: str, by: Identity, user_id: str, role: str) -> str | None:
    """Make the signed-in person `user_id` a `moderator` or a `member` of the room (a member
    again, after a removal); returns their row before (`RoomMembership.Role` or None). The
    owner and staff name and demote moderators; moderators add and re-admit members."""
    if role not in (RoomMembership.Role.MODERATOR, RoomMembership.Role.MEMBER):
        raise ProtocolError("invalid", "`role` is `moderator` or `member`.")
    room = Room.objects.filter(name=name).first()
    access = access_to(room, name, by)
    access.check_moderate()
    user_pk = _person(user_id)
    if room is None:
        room, _ = Room.objects.get_or_create(name=name)
    before = _membership(room, user_pk)
    if before == "owner":
        raise ProtocolError("forbidden", "The room's owner is not given another role.")
    touches_moderators = RoomMembership.Role.MODERATOR in (role, before)
    if touches_moderators and not access.may_configure:
        raise ProtocolError("forbidden", "Only the room's owner names or demotes moderators.")
    RoomMembership.objects.update_or_create(room=room, user_id=user_pk, defaults={"role": role})
    return before


def who_may_stay(name: str, user_ids: list[str]) -> set[str]:
    """Of the people `user_ids` (protocol ids), those who may enter the room now: after its
    visibility or guest rule changed, the others' connections are closed."""
    room = Room.objects.filter(name=name).first()
    staff_pks = set(
        get_user_model()
        .objects.filter(
            pk__in=[int(u[2:]) for u in user_ids if u.startswith("u:") and u[2:].isdigit()],
            is_staff=True,
        )
        .values_list("pk", flat=True)
    )
    allowed = set()
    for user_id in set(user_ids):
        is_guest = not user_id.startswith("u:")
        person = Identity(
            id=user_id,
            name="",
            is_guest=is_guest,
            is_staff=not is_guest and user_id[2:].isdigit() and int(user_id[2:]) in staff_pks,
        )
        if access_to(room, name, person).may_enter:
            allowed.add(user_id)
    return allowed


def rooms_of(identity: Identity, limit: int = 50) -> list[tuple[Room, RoleName]]:
    """The rooms `identity` owns or is a member of, with their role there, most recently
    active first (what the home page lists as "my rooms")."""
    user_pk = identity.user_pk
    if user_pk is None:
        return []
    found: dict[int, tuple[Room, RoleName]] = {
        room.pk: (room, "owner") for room in Room.objects.filter(owner_id=user_pk)[:limit]
    }
    memberships = RoomMembership.objects.filter(
        user_id=user_pk,
        role__in=[RoomMembership.Role.MODERATOR, RoomMembership.Role.MEMBER],  # not removals
    ).select_related("room")
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


def access_and_rooms(
    requests: list[tuple[str, Identity]],
) -> list[tuple[Access, Room | None]]:
    """`access_and_room` of many (room name, person) pairs in two queries, whatever their
    number: the rooms' rows, then the membership rows of those people in those rooms. The same
    rule, read from the database now (a burst of connects is checked in one trip)."""
    names = {name for name, _ in requests if is_room_name(name)}
    rows = {room.name: room for room in Room.objects.filter(name__in=names)} if names else {}
    user_pks = {i.user_pk for _, i in requests if i.user_pk is not None}
    guest_ids = {i.id for _, i in requests if i.is_guest}
    found: dict[tuple[int, str], str] = {}
    if rows and (user_pks or guest_ids):
        wanted = RoomMembership.objects.filter(room__in=list(rows.values())).filter(
            Q(user_id__in=user_pks) | Q(guest_id__in=guest_ids)
        )
        for room_pk, user_pk, guest_id, role in wanted.values_list(
            "room_id", "user_id", "guest_id", "role"
        ):
            found[(room_pk, f"u:{user_pk}" if user_pk is not None else guest_id)] = role
    answers: list[tuple[Access, Room | None]] = []
    for name, identity in requests:
        if name not in names:
            answers.append((Access(room=name, may_enter=False), None))
            continue
        room = rows.get(name)
        if room is None:
            answers.append((_access(None, name, identity, None), None))
            continue
        row: str | None
        if identity.user_pk is not None:
            row = "owner" if room.owner_id == identity.user_pk else None
            row = row or found.get((room.pk, f"u:{identity.user_pk}"))
        else:
            row = found.get((room.pk, identity.id)) if identity.is_guest else None
        answers.append((_access(room, name, identity, row), room))
    return answers
