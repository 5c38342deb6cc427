"""The room log in Redis, shared by every worker (see docs/scaling.md, "The room log").

Per room: a seq counter and a Stream whose entry ids are the seqs, plus the materialised view of
the latest messages (answers being written with their text so far), all updated by one Lua
script per append (chat.realtime.redis_lua), so a snapshot is exactly consistent with its seq.
Each worker runs ONE reader task: a multiplexed `XREAD BLOCK` over every room it serves, which
calls each room's listener in seq order. The reader survives Redis restarts (reconnects with
backoff); when Redis lost a room's data, seq restarts above the database's last seq
(`SEQ_RESTART_GAP`), the hub sees the jump and closes its members with 1012 so they resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chat.observability import metrics
from chat.protocol import ROOM_EVENT_TYPES, dumps
from chat.realtime import redis_lua
from chat.realtime.log import (
    SEQ_RESTART_GAP,
    AppendsLater,
    Listener,
    RoomLogUnavailable,
    RoomSeeder,
    Snapshot,
)
from chat.realtime.redaction import REDACTED_PATCH, REDACTED_TYPE, redacted_form, scrub
from chat.realtime.redis_client import command_client, plain_handshake
from chat.realtime.view import apply_to_view, feedback_counts, render_history

logger = logging.getLogger(__name__)

# The reader's XREAD blocks this long, then asks again: a dead connection without a FIN (a
# vanished host) is noticed within BLOCK + READER_TIMEOUT_MARGIN seconds, never later.
BLOCK_SECONDS = 10.0
READER_TIMEOUT_MARGIN = 10.0
READ_COUNT = 1000  # entries per stream per XREAD: bounds one reply's size
LIVE_BATCH = 500  # rooms per pipeline of the orphan reaper's look: bounds one reply
RECONNECT_DELAYS = (0.1, 2.0)  # first and largest delay between reconnection attempts
# Idle rooms' keys expire after this long (or twice the retention, if longer); a room that
# comes back is seeded from the database again.
IDLE_TTL_SECONDS = 86_400


@dataclass(slots=True)
class _Subscription:
    listener: Listener
    last: int  # the last seq delivered (or the seq the subscription started after)


class RedisRoomLog:
    """`RoomLog` for several workers; see the module docstring and `chat.realtime.log`."""

    def __init__(
        self,
        url: str,
        *,
        seeder: RoomSeeder,
        retention_events: int,
        retention_seconds: float,
        view_size: int,
        prefix: str = "chat",
        block_seconds: float = BLOCK_SECONDS,
    ) -> None:
        self._url = url
        self._seeder = seeder
        self._retention_events = max(1, retention_events)
        self._retention_seconds = max(1, int(retention_seconds))
        self._view_size = view_size
        self._ttl = max(IDLE_TTL_SECONDS, 2 * self._retention_seconds)
        self._prefix = prefix
        self._block = block_seconds
        self._redis = command_client(url, max_connections=64)
        self._append = self._redis.register_script(redis_lua.APPEND)
        self._snapshot = self._redis.register_script(redis_lua.SNAPSHOT)
        self._read_after = self._redis.register_script(redis_lua.READ_AFTER)
        self._live_answer = self._redis.register_script(redis_lua.LIVE_ANSWER)
        self._live_answers = self._redis.register_script(redis_lua.LIVE_ANSWERS)
        self._seed_script = self._redis.register_script(redis_lua.SEED)
        self._subs: dict[str, _Subscription] = {}
        self._append_keys: dict[str, list[str]] = {}
        self._seeding: dict[str, asyncio.Task[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        # The reader also reads this stream, so that `subscribe` can wake a blocked XREAD.
        self._wake_key = f"{prefix}:wake:{secrets.token_hex(8)}"

    # --- keys ---------------------------------------------------------------------------

    def _key(self, room: str, name: str) -> str:
        return f"{self._prefix}:room:{{{room}}}:{name}"

    def _keys(self, room: str, *names: str) -> list[str]:
        return [self._key(room, name) for name in names]

    def _text_prefix(self, room: str) -> str:
        return self._key(room, "text:")

    # --- writing --------------------------------------------------------------------------

    def append_now(self, room: str, event: dict[str, Any]) -> int | None:
        raise AppendsLater(room)  # every append is a round trip to Redis

    async def append(
        self, room: str, event: dict[str, Any], *, token: str | None = None
    ) -> int | None:
        """`RoomLog.append`, in one EVALSHA. Beyond the memory log, it also refuses (None) a
        delta or sources of an answer that is not live: across workers, a reaper may have
        ended an answer whose worker was only slow, and nothing may follow an end."""
        kind = event["type"]
        redacted_end: list[str] = ["", ""]
        if kind == "answer.delta":
            target, payload = event["answer_id"], event["text"]
        elif kind in ("question", "message", "answer.start"):
            target, payload = event["id"], dumps(_started_message(event))
        elif kind == "answer.sources":
            target, payload = event["answer_id"], dumps({"sources": event["sources"]})
            if "query" in event:
                # Stored instead, should the answer or its question (the query holds its
                # words) be redacted before the sources come.
                redacted_end = [dumps(redacted_form(event))[1:], event.get("question_id", "")]
        elif kind == "answer.end":
            patch: dict[str, Any] = {
                k: event[k] for k in ("status", "text", "error", "usage") if k in event
            }
            target, payload = event["answer_id"], dumps(patch)
            # Stored instead, should the answer be redacted before it ends.
            redacted_end = [
                dumps(redacted_form(event))[1:],
                dumps({**patch, **REDACTED_PATCH}),
            ]
        elif kind == REDACTED_TYPE:
            target, payload = event["id"], dumps(REDACTED_PATCH)
        elif kind == "answer.feedback":
            target, payload = event["answer_id"], dumps({"feedback": feedback_counts(event)})
            redacted_end = [str(event["rev"]), ""]
        elif kind in ROOM_EVENT_TYPES:
            # An event the view does not fold (room.updated): logged and delivered, no more.
            target, payload = "", ""
        else:
            raise ValueError(f"Not a room event: {kind!r}")
        room_keys = self._append_keys.get(room)
        if room_keys is None:  # the hot path: build a room's key names once
            room_keys = self._keys(
                room,
                *("seq", "log", "order", "msgs", "live", "times", "text:"),
                *("appended", "tokens", "redacted"),
            )
            if len(self._append_keys) >= 10_000:
                self._append_keys.clear()
            self._append_keys[room] = room_keys
        keys = [
            *room_keys[:6],
            room_keys[6] + (target if kind not in ("question", "message") else ""),
            *room_keys[7:],
        ]
        # The same token on every retry of this append (redis-py retries a command whose
        # connection broke, and the reply may be what was lost): it is appended once.
        args = [
            kind,
            dumps(event)[1:],
            target,
            payload,
            self._retention_events,
            self._view_size,
            self._retention_seconds,
            self._ttl,
            token or secrets.token_hex(8),
            redis_lua.RECENT_APPENDS,
            *redacted_end,
        ]
        began = time.monotonic()
        try:
            seq = await self._call(room, self._append, keys, args)
        except (RedisError, OSError) as err:
            raise RoomLogUnavailable(str(err) or type(err).__name__) from err
        metrics.ROOM_LOG_APPEND_SECONDS.observe(time.monotonic() - began)
        return int(seq) or None

    # --- reading --------------------------------------------------------------------------

    async def snapshot(self, room: str, limit: int) -> Snapshot:
        keys = self._keys(room, "seq", "order", "msgs", "live")
        reply = await self._call(room, self._snapshot, keys, [limit, self._text_prefix(room)])
        view: OrderedDict[str, dict[str, Any]] = OrderedDict()
        live: dict[str, list[str]] = {}
        for i in range(1, len(reply), 7):
            message_id, message, sources, end, redaction, feedback, text = reply[i : i + 7]
            view[message_id] = _message(message_id, message, sources, end, redaction, feedback)
            if text is not None:
                live[message_id] = [text]
        return Snapshot(seq=int(reply[0]), history=render_history(view, live, limit))

    async def read_after(self, room: str, after: int) -> list[tuple[int, str]] | None:
        keys = self._keys(room, "seq", "log", "redacted")
        reply = await self._call(room, self._read_after, keys, [after])
        if not isinstance(reply, list):
            return None
        redacted, entries = reply
        return [(_entry_seq(entry_id), scrub(fields[1], redacted)) for entry_id, fields in entries]

    async def live_answer(self, room: str, answer_id: str) -> dict[str, Any] | None:
        keys = [*self._keys(room, "seq", "live", "msgs"), self._text_prefix(room) + answer_id]
        reply = await self._call(room, self._live_answer, keys, [answer_id])
        if reply is None:
            return None
        message, sources, end, text = reply
        result = _message(answer_id, message, sources, end)
        result["text"] = text
        return result

    async def live_answers(self, room: str) -> list[str]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(self._key(room, "seq"))
            pipe.smembers(self._key(room, "live"))
            seeded, live = await pipe.execute()
        if not seeded:
            # Redis lost the room (or never had it): the database knows which answers were
            # still streaming, and the orphan reaper that asks us needs to see them.
            await self._seed(room)
            live = await self._redis.smembers(self._key(room, "live"))
        return sorted(live)

    async def live_answers_in(self, rooms: Sequence[str]) -> dict[str, list[str]]:
        """`live_answers` of each room, in one round trip per LIVE_BATCH rooms: the orphan
        reaper looks at every room of the worker twice a second (one trip per room was 2,000
        a second with 1,000 rooms)."""
        found: dict[str, list[str]] = {}
        for first in range(0, len(rooms), LIVE_BATCH):
            batch = rooms[first : first + LIVE_BATCH]
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in batch:
                    await self._live_answers(keys=self._keys(room, "seq", "live"), client=pipe)
                replies = await pipe.execute()
            for room, reply in zip(batch, replies, strict=True):
                # -1: Redis holds nothing of the room; `live_answers` seeds it.
                found[room] = await self.live_answers(room) if reply == -1 else sorted(reply)
        return found

    async def _call(self, room: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a script; when Redis holds nothing for the room, seed it and run it again."""
        reply = await script(keys=keys, args=args)
        if reply == -1:
            await self._seed(room)
            reply = await script(keys=keys, args=args)
            if reply == -1:
                raise RuntimeError(f"Room {room} vanished from Redis while it was seeded")
        return reply

    # --- seeding --------------------------------------------------------------------------

    async def _seed(self, room: str) -> None:
        """Seed the room from the database, once per process at a time (a reconnect storm
        after a Redis restart must not become one database query per socket)."""
        task = self._seeding.get(room)
        if task is None:
            task = asyncio.create_task(self._seed_now(room), name=f"seed {room}")
            self._seeding[room] = task
            task.add_done_callback(lambda t: self._seed_done(room, t))
        # Shielded: one cancelled joiner must not cancel the seeding others wait for.
        await asyncio.shield(task)

    def _seed_done(self, room: str, task: asyncio.Task[None]) -> None:
        if self._seeding.get(room) is task:
            del self._seeding[room]
        if not task.cancelled() and task.exception() is not None:
            logger.warning("Seeding room %s failed: %r", room, task.exception())

    async def _seed_now(self, room: str) -> None:
        seed = await self._seeder(room)
        # A room the database has seen (or Redis had) continues well above its last seq, so
        # a client's old cursor never matches a new event; SET NX makes every worker agree.
        base = seed.last_seq + SEQ_RESTART_GAP if (seed.last_seq or seed.messages) else 0
        args: list[Any] = [base, self._ttl, self._text_prefix(room)]
        for message in seed.messages[-self._view_size :]:
            streaming = message.get("status") == "streaming"
            args += [message["id"], dumps(message), "1" if streaming else "0", message["text"]]
        keys = self._keys(room, "seq", "log", "order", "msgs", "live", "times", "redacted")
        if await self._seed_script(keys=keys, args=args):
            logger.info("Room %s seeded from the database at seq %d", room, base)

    # --- subscriptions and the reader -----------------------------------------------------

    async def subscribe(self, room: str, listener: Listener) -> int:
        seq = await self._redis.get(self._key(room, "seq"))
        if seq is None:
            await self._seed(room)
            seq = await self._redis.get(self._key(room, "seq"))
        start = int(seq or 0)
        self._subs[room] = _Subscription(listener, start)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_loop(), name="room log reader")
        # Wake the reader's XREAD so that it starts reading this room now.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, self._ttl)
            await pipe.execute()
        return start

    async def unsubscribe(self, room: str) -> None:
        # Synchronous before any await: the hub relies on it (see RoomHub.leave).
        self._subs.pop(room, None)

    def forget_idle(self, idle_seconds: float) -> int:
        """Only the key names of rooms not read here are held (bounded anyway): drop them."""
        idle = [room for room in self._append_keys if room not in self._subs]
        for room in idle:
            del self._append_keys[room]
        return len(idle)

    async def _read_loop(self) -> None:
        """The worker's one reader: XREAD over every subscribed room, forever."""
        client = Redis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=self._block + READER_TIMEOUT_MARGIN,
            socket_connect_timeout=5,
            socket_keepalive=True,
            single_connection_client=True,
            retry=Retry(NoBackoff(), 0),  # we retry ourselves, with backoff and a log line
            **plain_handshake(),
        )
        wake_last = "0-0"
        failing_since: float | None = None
        delay = RECONNECT_DELAYS[0]
        try:
            # A flag, not only cancellation: under Python 3.11 a cancel that races redis-py's
            # socket timeout can surface as a TimeoutError, which the retry below would eat.
            while not self._closing:
                rooms = {self._key(room, "log"): room for room in self._subs}
                streams: dict[Any, Any] = {
                    key: f"{self._subs[room].last}-1" for key, room in rooms.items()
                }
                streams[self._wake_key] = wake_last
                try:
                    reply: Any = await client.xread(
                        streams, count=READ_COUNT, block=int(self._block * 1000)
                    )
                except (RedisError, OSError) as err:
                    if failing_since is None:
                        failing_since = time.monotonic()
                        logger.warning("Room log reader lost Redis (%s); reconnecting", err)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, RECONNECT_DELAYS[1])
                    continue
                if failing_since is not None:
                    logger.warning(
                        "Room log reader reconnected to Redis after %.1f s",
                        time.monotonic() - failing_since,
                    )
                    failing_since, delay = None, RECONNECT_DELAYS[0]
                for stream, entries in reply or []:
                    if stream == self._wake_key:
                        wake_last = entries[-1][0]
                    elif stream in rooms:
                        self._deliver(rooms[stream], entries)
        finally:
            await client.aclose()

    def _deliver(self, room: str, entries: list[tuple[str, dict[str, str]]]) -> None:
        sub = self._subs.get(room)
        if sub is None:
            return  # unsubscribed while the XREAD was in flight
        for entry_id, fields in entries:
            seq = _entry_seq(entry_id)
            if seq <= sub.last:
                continue  # read by an XREAD issued before a re-subscription
            sub.last = seq
            try:
                sub.listener(seq, fields["f"])
            except Exception:
                logger.exception("Listener of room %s failed at seq %d", room, seq)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            # Bounded: the reader stops at its next XREAD reply (at most one block) anyway.
            done, _ = await asyncio.wait({self._reader}, timeout=self._block + 5)
            if not done:
                logger.warning("Room log reader did not stop in time")
            elif not self._reader.cancelled() and self._reader.exception() is not None:
                logger.warning("Room log reader ended with %r", self._reader.exception())
            self._reader = None
        self._subs.clear()
        with contextlib.suppress(RedisError, OSError):  # It expires by itself.
            await self._redis.delete(self._wake_key)
        await self._redis.aclose(close_connection_pool=True)


def _entry_seq(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _started_message(event: dict[str, Any]) -> dict[str, Any]:
    """The view's message for a `question`, `message` or `answer.start`: the same fold as
    memory.py."""
    view: OrderedDict[str, dict[str, Any]] = OrderedDict()
    apply_to_view(view, {}, event, 1)
    return view[event["id"]]


def _message(
    message_id: str,
    message: str | None,
    sources: str | None,
    end: str | None,
    redaction: str | None = None,
    feedback: str | None = None,
) -> Any:
    """A view message from its stored parts (as started, then the sources, end, feedback and
    redaction patches)."""
    result: dict[str, Any] = json.loads(message) if message else {"id": message_id}
    for patch in (sources, end, feedback, redaction):
        if patch:
            result.update(json.loads(patch))
    return result
