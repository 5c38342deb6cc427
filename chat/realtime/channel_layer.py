"""channels_redis' core layer, made safe under redis-py >= 6 (settings.CHANNEL_LAYERS).

redis-py's asyncio `ConnectionPool` caps itself at 100 connections by default and raises
`MaxConnectionsError` the moment one more command runs concurrently; channels_redis builds
such a pool per host, so a burst (a reconnect storm: every member of a dead worker joining
another at once, each doing `group_add` and `group_send`) fails instead of waiting. This
layer builds a `BlockingConnectionPool` instead: at its cap, a command waits (up to
`pool_timeout` seconds) for a free connection. See docs/scaling.md, "redis-py pitfalls".

It adds `group_send_many`: many groups' messages in two round trips per Redis host, where
channels_redis' `group_send` takes four per group (a reconnect storm tells every room's group
that its member list changed, one notice per room). `group_send_many(layer, sends)` is the
same for any layer (one `group_send` each where the layer has no batch of its own).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from channels_redis.core import RedisChannelLayer as _CoreLayer
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import RedisError

from chat.realtime.redis_client import plain_handshake

logger = logging.getLogger(__name__)

# channels_redis' own script for a group's channels on one host (its `group_send`), so that
# messages land exactly as its `group_send` leaves them: a channel at its capacity skips it.
_GROUP_SEND = """
local over_capacity = 0
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""

Send = tuple[str, dict[str, Any]]  # a group and the message for it


async def group_send_many(layer: Any, sends: Sequence[Send]) -> None:
    """Send each message to its group: batched where the layer can (`RedisChannelLayer`),
    else one `group_send` each (the in-memory layer of a single worker)."""
    batch = getattr(layer, "group_send_many", None)
    if batch is not None:
        await batch(sends)
        return
    for group, message in sends:
        await layer.group_send(group, message)


class RedisChannelLayer(_CoreLayer):
    """`channels_redis.core.RedisChannelLayer` with a blocking, bounded connection pool."""

    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        if "address" not in host:
            return super().create_pool(index)  # Sentinel hosts: channels_redis' own pool.
        address = host.pop("address")
        timeout = host.pop("pool_timeout", 10)
        return BlockingConnectionPool.from_url(
            address, timeout=timeout, **{**plain_handshake(), **host}
        )

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        """channels_redis' cleaner of a received message's backup copy, which it fires as a
        task nobody awaits: Redis going away at that moment left "Task exception was never
        retrieved" in the log. The copy stays, and channels_redis delivers the message again
        after its next receive (at least once, as it says): the chat's control messages
        (cancel, presence, typing, moderation) are safe to get twice."""
        try:
            await super()._clean_receive_backup(index, channel)
        except RedisError as err:
            logger.warning(
                "Could not clear the backup of a message received on %s (Redis away: %s); "
                "it may come again",
                channel,
                err,
            )

    async def group_send_many(self, sends: Sequence[Send]) -> None:
        """`group_send` for each (group, message), in two pipelined round trips per Redis
        host for all of them: the groups' members, then every message (channels_redis' own
        keys, serialization, expiry and capacity rule, so any worker receives them as from
        `group_send`)."""
        by_host: dict[int, list[Send]] = defaultdict(list)
        for group, message in sends:
            assert self.require_valid_group_name(group), "Group name not valid"
            by_host[self.consistent_hash(group)].append((group, message))
        channels: dict[str, list[str]] = {}
        for index, items in by_host.items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for group, _ in items:
                    key = self._group_key(group)
                    pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
                    pipe.zrange(key, 0, -1)
                replies = await pipe.execute()
            for (group, _), names in zip(items, replies[1::2], strict=True):
                channels[group] = [name.decode("utf8") for name in names]
        # Per host of the channels: (group, its channel keys there, the script's arguments).
        calls: dict[int, list[tuple[str, list[Any], list[Any]]]] = defaultdict(list)
        for group, message in sends:
            keys_by_host, messages, capacities = self._map_channel_keys_to_connection(
                channels[group], message
            )
            for index, keys in keys_by_host.items():
                args = [*(messages[key] for key in keys), *(capacities[key] for key in keys)]
                calls[index].append((group, keys, args))
        for index, host_calls in calls.items():
            now = time.time()
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for key in {key for _, keys, _ in host_calls for key in keys}:
                    pipe.zremrangebyscore(key, min=0, max=int(now) - int(self.expiry))
                for i, (_, keys, args) in enumerate(host_calls):
                    # A channel's messages are ordered by this score: one microsecond apart
                    # keeps them in the order given (the same score would order them by
                    # their bytes).
                    score = now + i * 1e-6
                    pipe.eval(_GROUP_SEND, len(keys), *keys, *args, score, self.expiry)
                replies = await pipe.execute()
            over = replies[len(replies) - len(host_calls) :]
            for (group, keys, _), over_capacity in zip(host_calls, over, strict=True):
                if over_capacity:
                    logger.info(
                        "%s of %s channels over capacity in group %s",
                        over_capacity,
                        len(keys),
                        group,
                    )
