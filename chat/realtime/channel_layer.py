"""channels_redis' core layer, made safe under redis-py >= 6 (settings.CHANNEL_LAYERS).

redis-py's asyncio `ConnectionPool` caps itself at 100 connections by default and raises
`MaxConnectionsError` the moment one more command runs concurrently; channels_redis builds
such a pool per host, so a burst (a reconnect storm: every member of a dead worker joining
another at once, each doing `group_add` and `group_send`) fails instead of waiting. This
layer builds a `BlockingConnectionPool` instead: at its cap, a command waits (up to
`pool_timeout` seconds) for a free connection. See docs/scaling.md, "redis-py pitfalls".
"""

from __future__ import annotations

import logging
from typing import Any

from channels_redis.core import RedisChannelLayer as _CoreLayer
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import RedisError

from chat.realtime.redis_client import plain_handshake

logger = logging.getLogger(__name__)


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
