"""The Redis command client that the room log and the coordinator share the settings of."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff


def command_client(url: str, *, max_connections: int) -> Redis:
    """A client for commands: a bounded pool that makes callers wait for a free connection
    under a burst instead of failing (redis-py >= 6 raises MaxConnectionsError at its cap),
    and a few quick retries so a blip does not fail an append."""
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        timeout=10,
        socket_timeout=10,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 4),
    )
    return Redis(connection_pool=pool)
