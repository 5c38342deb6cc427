"""What workers must agree on besides the log: who is in a room, how many answers run, and
which worker owns (and keeps a lease on) each running answer.

`MemoryCoordinator` serves one process; `chat.realtime.redis_coordination.RedisCoordinator`
serves several workers through Redis.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AnswerSlot:
    """One answer counted against its asker's limit and its room's (`room` None: an answer in
    no room, `POST /api/ask`, counts against its asker only)."""

    room: str | None
    user_id: str
    answer_id: str


class Coordinator(Protocol):
    """Shared state between workers; every method is cheap and safe to call concurrently."""

    worker_id: str

    async def presence_add(self, room: str, conn_id: str, member: dict[str, str]) -> None: ...

    async def presence_remove(self, room: str, conn_id: str) -> None: ...

    async def members(self, room: str) -> list[dict[str, str]]:
        """Members now in the room, one entry per person, in order of arrival."""
        ...

    async def reserve_answer(
        self, slot: AnswerSlot, *, max_per_user: int, max_per_room: int
    ) -> bool:
        """Count a new answer against the limits; False (nothing counted) when over one."""
        ...

    async def release_answer(self, slot: AnswerSlot) -> None: ...

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
        self._by_user: dict[str, set[str]] = defaultdict(set)
        self._by_room: dict[str, set[str]] = defaultdict(set)
        self._owners: dict[str, str] = {}

    async def presence_add(self, room: str, conn_id: str, member: dict[str, str]) -> None:
        self._presence[room][conn_id] = member

    async def presence_remove(self, room: str, conn_id: str) -> None:
        self._presence[room].pop(conn_id, None)
        if not self._presence[room]:
            del self._presence[room]

    async def members(self, room: str) -> list[dict[str, str]]:
        return unique_members(self._presence.get(room, {}).values())

    async def reserve_answer(
        self, slot: AnswerSlot, *, max_per_user: int, max_per_room: int
    ) -> bool:
        if len(self._by_user[slot.user_id]) >= max_per_user:
            return False
        if slot.room is not None and len(self._by_room[slot.room]) >= max_per_room:
            return False
        self._by_user[slot.user_id].add(slot.answer_id)
        if slot.room is not None:
            self._by_room[slot.room].add(slot.answer_id)
        return True

    async def release_answer(self, slot: AnswerSlot) -> None:
        # Empty sets go, so the dictionaries hold only people and rooms with answers running.
        for key, slots in ((slot.user_id, self._by_user), (slot.room, self._by_room)):
            if key is not None and key in slots:
                slots[key].discard(slot.answer_id)
                if not slots[key]:
                    del slots[key]

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
    """One entry per person (a person may have several tabs open), order kept."""
    seen: dict[str, dict[str, str]] = {}
    for member in entries:  # type: ignore[attr-defined]
        seen.setdefault(member["id"], {"id": member["id"], "name": member["name"]})
    return list(seen.values())
