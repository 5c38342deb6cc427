"""What workers agree on through Redis: presence, answer slots, rate limits, and answer owners
with leases.

- Presence: a hash per room, connection id -> member JSON tagged with its worker id and an
  arrival number. Each worker keeps a heartbeat key with a TTL; members of a worker whose
  heartbeat expired (it died) are left out of `members` and removed.
- Answer slots: a sorted set per counter (a user, a room, a guest address, the whole server;
  answer id -> expiry time), counted and added in one script; entries of a dead worker
  expire, since only their owner extends them.
- Rate limits: a token bucket per key as one number (GCRA), on Redis' clock, so N workers
  allow what one would, not N times it.
- Owners: `owner:<answer>` holds the owner's control channel with a TTL (`SET ... PX`), the
  lease; the owner refreshes it (pipelined, with the slots and the heartbeat). Once it
  expired, `owner_channel` returns None and the orphan reaper ends the answer `interrupted`.
- Redis restarts: the next refresh finds its marker key gone and publishes this worker's
  presence, slots and leases again; for one lease period after Redis lost its data,
  `owner_channel` waits for owners to re-claim instead of declaring their answers orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from chat.batching import MicroBatcher
from chat.realtime.coordination import AnswerSlot, Reservation, SlotLimits, unique_members
from chat.realtime.redis_client import command_client

logger = logging.getLogger(__name__)

# KEYS: presence hash, heartbeat ; ARGV: conn id, member JSON, heartbeat ttl ms.
# The hash's "#n" field numbers arrivals, so `members` can list people in order of arrival.
_PRESENCE_ADD = """
local n = redis.call('HINCRBY', KEYS[1], '#n', 1)
redis.call('HSET', KEYS[1], ARGV[1], n .. ' ' .. ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
"""

# KEYS: presence hash ; ARGV: conn ids. Deletes the hash once only the counter is left.
_PRESENCE_REMOVE = """
redis.call('HDEL', KEYS[1], unpack(ARGV))
if redis.call('HLEN', KEYS[1]) <= 1 then redis.call('DEL', KEYS[1]) end
"""

# KEYS: the slot's counters (sorted sets) ; ARGV: answer id, now ms, expiry ms, key ttl ms,
# then each counter's limit. All or none: returns 0 when taken, else the (1-based) index of the
# counter that is full. Expired slots (of dead workers) are dropped before counting.
_RESERVE = """
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[2])
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[4 + i]) then return i end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[4])
end
return 0
"""

# KEYS: the bucket ; ARGV: ms between tokens, tokens that may be saved up. A token bucket as
# GCRA (one "theoretical arrival time" per key), on Redis' clock so every worker agrees.
# Returns 0 when a token was taken, else the ms until one is there.
_TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - (tonumber(ARGV[2]) - 1) * interval - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 1000)
return 0
"""

# KEYS: owner key, data-epoch key ; ARGV: grace ms.
# Returns the owner's channel; 1 while Redis lost its data less than `grace` ago (owners are
# re-claiming: ask again shortly); 0 when nobody holds the answer.
_OWNER = """
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = tonumber(redis.call('GET', KEYS[2]))
if not since then
  redis.call('SET', KEYS[2], now)
  since = now
end
if now - since < tonumber(ARGV[1]) then return 1 end
return 0
"""

# KEYS: data-epoch key. Notes (once) when this Redis data set began, by Redis' clock.
_EPOCH = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'NX')
"""

OWNER_POLL_SECONDS = 0.2
# How long a worker's heartbeat, once looked at, is taken as is (see `_alive`).
BEAT_CACHE_SECONDS = 0.5
# Member entries kept decoded (an entry is ~100 bytes of JSON; cleared whole when full).
DECODED_MEMBERS = 10_000
# Joins sent to Redis in one pipelined round trip, at most.
JOIN_BATCH = 256


@dataclass(frozen=True, slots=True)
class _Join:
    room: str
    conn_id: str
    entry: str  # the member's JSON, tagged with this worker


class RedisCoordinator:
    """`Coordinator` for several workers; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        worker_id: str,
        prefix: str = "chat",
        lease_seconds: float | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._prefix = prefix
        lease = settings.CHAT_LEASE_SECONDS if lease_seconds is None else lease_seconds
        self._lease = float(lease)
        # A worker is dead after missing a few refreshes (they come every lease / 3).
        self._heartbeat_ms = int(self._lease * 3 * 1000)
        # A slot outlives a few leases: only its owner's refreshes extend it.
        self._slot_ms = int(max(self._lease * 4, 10.0) * 1000)
        self._redis = command_client(url, max_connections=32)
        self._presence_add = self._redis.register_script(_PRESENCE_ADD)
        self._presence_remove = self._redis.register_script(_PRESENCE_REMOVE)
        self._reserve = self._redis.register_script(_RESERVE)
        self._take_token = self._redis.register_script(_TAKE_TOKEN)
        self._owner = self._redis.register_script(_OWNER)
        self._epoch = self._redis.register_script(_EPOCH)
        # What this worker published, to publish again if Redis loses it.
        self._presence: dict[tuple[str, str], str] = {}
        self._decoded: dict[str, dict[str, str]] = {}  # member JSON -> member (read-only)
        self._beats: dict[str, tuple[float, bool]] = {}  # worker -> (seen at, alive)
        self._slots: dict[str, AnswerSlot] = {}  # answer id -> its slot
        self._owned: dict[str, str] = {}  # answer id -> control channel
        self._heartbeat_seen = False
        # Called after we published our state again (Redis lost its data): the worker
        # re-joins its channel-layer groups, which were lost too.
        self.on_data_loss: Callable[[], Awaitable[None]] | None = None
        # Presence entries whose removal failed (Redis away), removed at the next refresh; then
        # this is called with their rooms, whose member lists changed.
        self._stale_presence: set[tuple[str, str]] = set()
        self.on_presence_healed: Callable[[set[str]], Awaitable[None]] | None = None
        # Joins arriving together share one round trip (see `presence_join`).
        self._joins: MicroBatcher[_Join, list[dict[str, str]]] = MicroBatcher(
            self._presence_joins, max_batch=JOIN_BATCH
        )
        # (room, conn id) -> done once the round trip carrying its join is over.
        self._joining: dict[tuple[str, str], asyncio.Future[None]] = {}
        # Removals arriving together share one round trip too (a crowd leaving at once).
        self._removals: MicroBatcher[tuple[str, str], None] = MicroBatcher(
            self._presence_removals, max_batch=JOIN_BATCH
        )

    # --- keys ---------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    @property
    def _heartbeat(self) -> str:
        return self._k("worker", self.worker_id)

    # --- presence -----------------------------------------------------------------------

    async def presence_add(self, room: str, conn_id: str, member: dict[str, str]) -> None:
        entry = json.dumps({**member, "w": self.worker_id})
        self._presence[(room, conn_id)] = entry
        await self._presence_add(
            keys=[self._k("presence", room), self._heartbeat],
            args=[conn_id, entry, self._heartbeat_ms],
        )

    async def presence_remove(self, room: str, conn_id: str) -> None:
        """Never raises for Redis being away: an entry that could not be removed now is
        removed by the next refresh that reaches Redis (`on_presence_healed` then tells its
        rooms), instead of staying in the member list for good."""
        landed = self._joining.get((room, conn_id))
        if landed is not None:
            # Its join is on its way to Redis (a join given up half way leaves at once):
            # removing it first would let the join land after, a ghost in the member list.
            await asyncio.shield(landed)
        self._presence.pop((room, conn_id), None)
        try:
            # Shielded: a leave cancelled half way still removes the entry.
            await asyncio.shield(self._removals.submit((room, conn_id)))
        except (RedisError, OSError) as err:
            self._stale_presence.add((room, conn_id))
            logger.info("Presence of %s in %s left for later (%s)", conn_id, room, err)

    async def _presence_removals(self, removals: list[tuple[str, str]]) -> list[None]:
        """The entries of every room in one pipelined round trip (one script call a room)."""
        by_room: dict[str, list[str]] = {}
        for room, conn_id in removals:
            by_room.setdefault(room, []).append(conn_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for room, conn_ids in by_room.items():
                await self._presence_remove(
                    keys=[self._k("presence", room)], args=conn_ids, client=pipe
                )
            await pipe.execute()
        return [None] * len(removals)

    async def presence_join(
        self, room: str, conn_id: str, member: dict[str, str]
    ) -> list[dict[str, str]]:
        """`presence_add` and `members` in one round trip, shared by the joins that arrive
        together: in a reconnect storm thousands join at once, and one round trip each held
        every pooled connection until joins timed out waiting for one (docs/benchmarks.md,
        "Reconnect storm")."""
        entry = json.dumps({**member, "w": self.worker_id})
        self._presence[(room, conn_id)] = entry
        return await self._joins.submit(_Join(room, conn_id, entry))

    async def _presence_joins(self, joins: list[_Join]) -> list[list[dict[str, str]]]:
        """Every join's entry, then each of their rooms' members (which include them), in one
        pipelined round trip; each join gets its room's list."""
        landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for join in joins:
            self._joining[(join.room, join.conn_id)] = landed
        rooms = list(dict.fromkeys(join.room for join in joins))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for join in joins:
                    await self._presence_add(
                        keys=[self._k("presence", join.room), self._heartbeat],
                        args=[join.conn_id, join.entry, self._heartbeat_ms],
                        client=pipe,
                    )
                for room in rooms:
                    pipe.hgetall(self._k("presence", room))
                replies = await pipe.execute()
        finally:
            landed.set_result(None)
            for join in joins:
                if self._joining.get((join.room, join.conn_id)) is landed:
                    del self._joining[(join.room, join.conn_id)]
        members: dict[str, list[dict[str, str]]] = {}
        for room, stored in zip(rooms, replies[len(joins) :], strict=True):
            members[room] = await self._live_members(self._k("presence", room), stored)
        return [members[join.room] for join in joins]

    async def members(self, room: str) -> list[dict[str, str]]:
        key = self._k("presence", room)
        return await self._live_members(key, await self._redis.hgetall(key))

    async def _live_members(self, key: str, stored: dict[Any, Any]) -> list[dict[str, str]]:
        entries: list[tuple[int, str, dict[str, str]]] = []
        for conn_id, value in stored.items():
            if conn_id != "#n":
                number, _, member = value.partition(" ")
                entries.append((int(number), conn_id, self._decode_member(member)))
        workers = {m["w"] for _, _, m in entries} - {self.worker_id}
        dead = {w for w in workers if not await self._alive(w)} if workers else set()
        if dead:
            # Their worker died (or stalled past its heartbeat: it publishes them again).
            gone = [conn_id for _, conn_id, m in entries if m["w"] in dead]
            await self._presence_remove(keys=[key], args=gone)
        entries.sort(key=lambda entry: entry[0])
        return unique_members(m for _, _, m in entries if m["w"] not in dead)

    async def _alive(self, worker: str) -> bool:
        """Whether `worker`'s heartbeat is there, as seen at most BEAT_CACHE_SECONDS ago: a
        crowd joining asks once, not once per join (a dead worker's members already stay
        listed until its heartbeat expires, three leases)."""
        now = time.monotonic()
        seen = self._beats.get(worker)
        if seen is None or now - seen[0] > BEAT_CACHE_SECONDS:
            alive = bool(await self._redis.exists(self._k("worker", worker)))
            if len(self._beats) >= 1000:
                self._beats.clear()
            seen = self._beats[worker] = (now, alive)
        return seen[1]

    def _decode_member(self, raw: str) -> dict[str, str]:
        """A member entry's JSON, decoded once per entry: every join to a room reads all of its
        entries (a crowd joining decoded O(n²) of them; docs/benchmarks.md, "Reconnect storm").
        Entries never change (a new connection is a new entry), so the cache is only bounded."""
        member = self._decoded.get(raw)
        if member is None:
            if len(self._decoded) >= DECODED_MEMBERS:
                self._decoded.clear()
            member = self._decoded[raw] = json.loads(raw)
        return member

    # --- answer slots -------------------------------------------------------------------

    def _slot_keys(self, slot: AnswerSlot) -> list[str]:
        return [self._k("slots", counter) for _, counter in slot.counters()]

    async def reserve_answer(self, slot: AnswerSlot, limits: SlotLimits) -> Reservation:
        now = int(time.time() * 1000)
        counters = slot.counters()
        full = await self._reserve(
            keys=self._slot_keys(slot),
            args=[
                slot.answer_id,
                now,
                now + self._slot_ms,
                self._slot_ms,
                *(limits.of(limit) for limit, _ in counters),
            ],
        )
        if full:
            return Reservation(counters[int(full) - 1][0])
        self._slots[slot.answer_id] = slot
        return Reservation()

    async def release_answer(self, slot: AnswerSlot) -> None:
        self._slots.pop(slot.answer_id, None)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._slot_keys(slot):
                pipe.zrem(key, slot.answer_id)
            await pipe.execute()

    # --- rate limits --------------------------------------------------------------------

    async def take_token(self, key: str, *, rate: float, burst: int) -> float:
        if rate <= 0:
            return float("inf")
        wait_ms = await self._take_token(
            keys=[self._k("bucket", key)], args=[1000.0 / rate, max(burst, 1)]
        )
        return float(wait_ms) / 1000.0

    # --- owners and leases --------------------------------------------------------------

    async def claim(self, answer_id: str, *, control_channel: str, lease_seconds: float) -> None:
        self._owned[answer_id] = control_channel
        await self._redis.set(
            self._k("owner", answer_id), control_channel, px=int(lease_seconds * 1000)
        )

    async def refresh(self, answer_ids: list[str], *, lease_seconds: float) -> None:
        """Extend the leases and slots of our running answers and our heartbeat, in one round
        trip; when our marker was gone (Redis lost its data), publish everything again."""
        lease_ms = int(lease_seconds * 1000)
        slot_expiry = int(time.time() * 1000) + self._slot_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            # Only refreshes set the marker (presence_add sets the heartbeat too): its
            # absence tells that Redis lost what this worker published.
            pipe.set(self._heartbeat + ":mark", "1", px=self._heartbeat_ms, get=True)
            pipe.set(self._heartbeat, "1", px=self._heartbeat_ms)
            await self._epoch(keys=[self._k("epoch")], client=pipe)
            for answer_id in answer_ids:
                channel = self._owned.get(answer_id)
                if channel is not None:
                    pipe.set(self._k("owner", answer_id), channel, px=lease_ms)
                slot = self._slots.get(answer_id)
                if slot is not None:
                    self._queue_slot(pipe, slot, slot_expiry)
            had_mark = (await pipe.execute())[0] is not None
        if not had_mark and self._heartbeat_seen:
            await self._republish(slot_expiry)
            if self.on_data_loss is not None:
                await self.on_data_loss()
        self._heartbeat_seen = True
        if self._stale_presence:
            await self._remove_stale_presence()

    async def _remove_stale_presence(self) -> None:
        """Remove the presence entries whose removal failed while Redis was away."""
        stale = list(self._stale_presence)
        async with self._redis.pipeline(transaction=False) as pipe:
            for room, conn_id in stale:
                await self._presence_remove(
                    keys=[self._k("presence", room)], args=[conn_id], client=pipe
                )
            await pipe.execute()
        self._stale_presence.difference_update(stale)
        logger.info("Removed %d presence entries left behind by an outage", len(stale))
        if self.on_presence_healed is not None:
            await self.on_presence_healed({room for room, _ in stale})

    def _queue_slot(self, pipe: Any, slot: AnswerSlot, expiry: int) -> None:
        for key in self._slot_keys(slot):
            pipe.zadd(key, {slot.answer_id: expiry})
            pipe.pexpire(key, self._slot_ms)

    async def _republish(self, slot_expiry: int) -> None:
        logger.warning(
            "Redis lost worker %s's state (restarted?): publishing %d presence entries "
            "and %d answers again",
            self.worker_id,
            len(self._presence),
            len(self._owned),
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for (room, conn_id), entry in self._presence.items():
                await self._presence_add(
                    keys=[self._k("presence", room), self._heartbeat],
                    args=[conn_id, entry, self._heartbeat_ms],
                    client=pipe,
                )
            for slot in self._slots.values():
                self._queue_slot(pipe, slot, slot_expiry)
            await pipe.execute()

    async def disown(self, answer_id: str) -> None:
        self._owned.pop(answer_id, None)
        await self._redis.delete(self._k("owner", answer_id))

    async def owner_channel(self, answer_id: str) -> str | None:
        """The owner's control channel; None once its lease expired. Right after Redis lost
        its data this waits (at most one lease) for the owner to claim its answer again."""
        keys = [self._k("owner", answer_id), self._k("epoch")]
        deadline = time.monotonic() + self._lease + 1.0
        while True:
            reply = await self._owner(keys=keys, args=[int(self._lease * 1000)])
            if isinstance(reply, str):
                return reply
            if reply == 0 or time.monotonic() > deadline:
                return None
            await asyncio.sleep(OWNER_POLL_SECONDS)

    async def close(self) -> None:
        # Gone now, not when the heartbeat expires: others drop our members at once.
        with contextlib.suppress(RedisError, OSError):  # Else it expires by itself.
            await self._redis.delete(self._heartbeat, self._heartbeat + ":mark")
        await self._redis.aclose(close_connection_pool=True)
