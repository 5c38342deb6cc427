"""The room log: one ordered log of room events per room, the source of truth for live events.

Appending assigns the room's next `seq`. The log also keeps a small materialised view of the
room's latest messages (answers being written included, with their text so far), updated in the
same atomic step as the append, so that a `welcome` snapshot is exactly consistent with its
`seq`: the history reflects every event up to `seq` and none after it.

Backends: `chat.realtime.memory.MemoryRoomLog` (one process) and
`chat.realtime.redis_log.RedisRoomLog` (several workers).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# Called with (seq, frame_json) for every event of a subscribed room, in seq order.
Listener = Callable[[int, str], None]

# When a log starts from the database instead of its own data (a fresh process, or Redis that
# lost its data), seq continues this far above the last seq the database saw: a client that
# resumes with an older cursor can never mistake new events for ones it has seen.
SEQ_RESTART_GAP = 10_000

# Append tokens: this process's random prefix and a counter. A token only has to differ from
# the room's last 256 (chat.realtime.redis_lua); a fresh random one per delta cost a system
# call per delta (docs/benchmarks.md, "Fixes").
_TOKEN_PREFIX = secrets.token_hex(6)
_token_counter = itertools.count()


def append_token() -> str:
    """A name for one append, unique across processes and time."""
    return f"{_TOKEN_PREFIX}{next(_token_counter):x}"


class AppendsLater(Exception):
    """This log cannot append without waiting (its store is across the network, or it must
    first load the room): `append` instead."""


class RoomLogUnavailable(Exception):
    """The log's store cannot be reached (Redis is away): nothing was appended, or the reply
    was lost; appending again with the same token is safe."""


@dataclass(slots=True)
class Snapshot:
    """What a `welcome` shows: the last seq it reflects and the room's latest messages."""

    seq: int
    history: list[dict[str, Any]]


@dataclass(slots=True)
class RoomSeed:
    """How a room log starts when it holds nothing for the room: from the database."""

    last_seq: int
    messages: list[dict[str, Any]] = field(default_factory=list)


class RoomSeeder(Protocol):
    async def __call__(self, room: str) -> RoomSeed: ...


class RoomLog(Protocol):
    """Ordered, resumable room events; see the module docstring."""

    async def append(
        self, room: str, event: dict[str, Any], *, token: str | None = None
    ) -> int | None:
        """Give `event` the room's next seq, store it, update the view, wake readers.

        `token` names this append: appended again with the same token (a retry after
        `RoomLogUnavailable`, whose reply may be what was lost), it returns the first seq and
        appends nothing. Raises `RoomLogUnavailable` when the store cannot be reached.

        Returns the seq; returns None and appends nothing for an `answer.sources`,
        `answer.delta` or `answer.end` of an answer that is not live (already ended, perhaps by
        another worker that found its owner dead): so every answer ends exactly once, and
        nothing of it follows its end.
        """
        ...

    def append_now(self, room: str, event: dict[str, Any]) -> int | None:
        """`append`, done before it returns, when the log can do that without waiting (the
        memory log, for a room it holds); else raises `AppendsLater`. A running answer's deltas
        go this way when they can: a task per delta was a measurable share of a worker's CPU
        (docs/benchmarks.md, "Fixes")."""
        ...

    async def snapshot(self, room: str, limit: int) -> Snapshot:
        """The last seq and up to `limit` latest messages, oldest first, atomically."""
        ...

    async def read_after(self, room: str, after: int) -> list[tuple[int, str]] | None:
        """Every held event with seq > `after`, in order; None when some are no longer held."""
        ...

    async def live_answer(self, room: str, answer_id: str) -> dict[str, Any] | None:
        """The view's message for an answer still being written (its text so far), or None."""
        ...

    async def live_answers(self, room: str) -> list[str]:
        """Ids of the room's answers still being written."""
        ...

    async def live_answers_in(self, rooms: Sequence[str]) -> dict[str, list[str]]:
        """`live_answers` of each of these rooms (every room a key), read together."""
        ...

    async def subscribe(self, room: str, listener: Listener) -> int:
        """Call `listener` for every event of `room` after the returned seq (one per room)."""
        ...

    async def unsubscribe(self, room: str) -> None: ...

    def forget_idle(self, idle_seconds: float) -> int:
        """Drop what this process holds of rooms nobody here reads, with no answer being
        written, unused for `idle_seconds` (the shared store keeps what it keeps); how many."""
        ...

    async def close(self) -> None: ...


async def append_patiently(
    log: RoomLog, room: str, event: dict[str, Any], *, within: float
) -> int | None:
    """`log.append`, riding out an outage of the log's store for up to `within` seconds: the
    same token on every try, so the event is appended once however many replies were lost.
    A running answer's events go through here, so an answer survives Redis going away for a
    while (its deltas wait in the answer's own buffer meanwhile, chat.answers.publisher)."""
    token = append_token()
    deadline = time.monotonic() + within
    delay = 0.05
    while True:
        try:
            return await log.append(room, event, token=token)
        except RoomLogUnavailable as err:
            if time.monotonic() + delay > deadline:
                raise
            logger.debug("Room log away (%s); %s of %s waits", err, event["type"], room)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
