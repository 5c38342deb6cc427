"""What workers must agree on besides the log: who is in a room, how many answers run, and
which worker owns (and keeps a lease on) each running answer.

`MemoryCoordinator` serves one process; `chat.realtime.redis_coordination.RedisCoordinator`
serves several workers through Redis.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from chat.ratelimit import BucketRegistry


@dataclass(frozen=True, slots=True)
class AnswerSlot:
    """One running answer, counted against its asker's limit, its room's (`room` None: an
    answer in no room, `POST /api/ask`), its client address's (`address`: set for guests, who
    can make themselves a new identity at will) and the whole server's."""

    room: str | None
    user_id: str
    answer_id: str
    address: str | None = None

    def counters(self) -> list[tuple[str, str]]:
        """(limit name, counter name) of every counter this slot takes a place in."""
        found = [("user", f"user:{self.user_id}")]
        if self.room is not None:
            found.append(("room", f"room:{self.room}"))
        if self.address is not None:
            found.append(("address", f"address:{self.address}"))
        found.append(("total", "total"))
        return found


@dataclass(frozen=True, slots=True)
class SlotLimits:
    """How many answers may run at once: per person, per room, per guest address, in all."""

    per_user: int
    per_room: int
    per_address: int
    total: int

    def of(self, limit: str) -> int:
        return {
            "user": self.per_user,
            "room": self.per_room,
            "address": self.per_address,
            "total": self.total,
        }[limit]


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `reserve_answer` did: true when the slot was taken; else `limit` names the limit
    that refused it ("user", "room", "address" or "total")."""

    limit: str | None = None

    def __bool__(self) -> bool:
        return self.limit is None


class Coordinator(Protocol):
    """Shared state between workers; every method is cheap and safe to call concurrently."""

    worker_id: str

    async def presence_add(self, room: str, conn_id: str, member: dict[str, str]) -> None: ...

    async def presence_join(
        self, room: str, conn_id: str, member: dict[str, str]
    ) -> list[dict[str, str]]:
        """`presence_add`, then `members` (which include this one), in one step."""
        ...

    async def presence_remove(self, room: str, conn_id: str) -> None: ...

    async def members(self, room: str) -> list[dict[str, str]]:
        """Members now in the room, one entry per person, in order of arrival."""
        ...

    async def reserve_answer(self, slot: AnswerSlot, limits: SlotLimits) -> Reservation:
        """Count a new answer against the limits, all or none: refused (nothing counted) when
        one of its counters is full."""
        ...

    async def release_answer(self, slot: AnswerSlot) -> None: ...

    async def take_token(self, key: str, *, rate: float, burst: int) -> float:
        """Take a token of the bucket `key` (`rate` per second, at most `burst` saved up),
        shared by every worker: 0 when taken, else the seconds until one is there."""
        ...

    async def claim(self, answer_id: str, *, control_channel: str, lease_seconds: float) -> None:
        """This worker owns the answer; its lease lasts `lease_seconds` unless refreshed."""
        ...

    async def refresh(self, answer_ids: list[str], *, lease_seconds: float) -> None: ...

    async def disown(self, answer_id: str) -> None: ...

    async def owner_channel(self, answer_id: str) -> str | None:
        """The control channel of the worker running the answer, or None if nobody holds it."""
        ...

    async def close(self) -> None: ...


class MemoryCoordinator:
    """`Coordinator` for one process: plain dictionaries, no leases needed."""

    def __init__(self, worker_id: str = "local") -> None:
        self.worker_id = worker_id
        self._presence: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        self._slots: dict[str, set[str]] = defaultdict(set)  # counter -> answer ids
        self._buckets: dict[tuple[float, int], BucketRegistry] = {}
        self._owners: dict[str, str] = {}

    async def presence_add(self, room: str, conn_id: str, member: dict[str, str]) -> None:
        self._presence[room][conn_id] = member

    async def presence_join(
        self, room: str, conn_id: str, member: dict[str, str]
    ) -> list[dict[str, str]]:
        await self.presence_add(room, conn_id, member)
        return await self.members(room)

    async def presence_remove(self, room: str, conn_id: str) -> None:
        self._presence[room].pop(conn_id, None)
        if not self._presence[room]:
            del self._presence[room]

    async def members(self, room: str) -> list[dict[str, str]]:
        return unique_members(self._presence.get(room, {}).values())

    async def reserve_answer(self, slot: AnswerSlot, limits: SlotLimits) -> Reservation:
        counters = slot.counters()
        for limit, counter in counters:
            if len(self._slots.get(counter, ())) >= limits.of(limit):
                return Reservation(limit)
        for _, counter in counters:
            self._slots[counter].add(slot.answer_id)
        return Reservation()

    async def release_answer(self, slot: AnswerSlot) -> None:
        # Empty sets go, so the dictionary holds only counters with answers running.
        for _, counter in slot.counters():
            if counter in self._slots:
                self._slots[counter].discard(slot.answer_id)
                if not self._slots[counter]:
                    del self._slots[counter]

    async def take_token(self, key: str, *, rate: float, burst: int) -> float:
        buckets = self._buckets.get((rate, burst))
        if buckets is None:
            buckets = self._buckets[(rate, burst)] = BucketRegistry(rate, burst)
        return buckets.take(key)

    async def claim(self, answer_id: str, *, control_channel: str, lease_seconds: float) -> None:
        self._owners[answer_id] = control_channel

    async def refresh(self, answer_ids: list[str], *, lease_seconds: float) -> None:
        return None

    async def disown(self, answer_id: str) -> None:
        self._owners.pop(answer_id, None)

    async def owner_channel(self, answer_id: str) -> str | None:
        return self._owners.get(answer_id)

    async def close(self) -> None:
        return None


def unique_members(entries: object) -> list[dict[str, str]]:
    """One entry per person (a person may have several tabs open), order kept; with their
    `role` in the room when they have one."""
    seen: dict[str, dict[str, str]] = {}
    for member in entries:  # type: ignore[attr-defined]
        entry = {"id": member["id"], "name": member["name"]}
        if member.get("role"):
            entry["role"] = member["role"]
        seen.setdefault(member["id"], entry)
    return list(seen.values())
