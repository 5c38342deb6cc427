"""The Redis command client that the room log and the coordinator share the settings of."""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from chat.observability import metrics


class _CountingPool(BlockingConnectionPool):
    """Counts connections opened again after they dropped (`chat_redis_reconnects_total`):
    a pool's connection objects are reused, and each connects again, after an error, on its
    next command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connected_once: set[int] = set()

    def make_connection(self) -> AbstractConnection:
        connection: AbstractConnection = super().make_connection()
        connection.register_connect_callback(self._connected)
        return connection

    def _connected(self, connection: AbstractConnection) -> None:
        if id(connection) in self._connected_once:
            metrics.REDIS_RECONNECTS.inc()
        else:
            self._connected_once.add(id(connection))


def command_client(url: str, *, max_connections: int) -> Redis:
    """A client for commands: a bounded pool that makes callers wait for a free connection
    under a burst instead of failing (redis-py >= 6 raises MaxConnectionsError at its cap),
    and a few quick retries so a blip does not fail an append."""
    pool = _CountingPool.from_url(
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
