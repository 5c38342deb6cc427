"""The Redis command client that the room log and the coordinator share the settings of."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from chat.observability import metrics


@functools.cache
def plain_handshake() -> dict[str, Any]:
    """Connection options for a connect that Redis 7.0 (Debian 12's) answers without errors:
    redis-py 8 sends `CLIENT SETINFO` twice and `CLIENT MAINT_NOTIFICATIONS ON` (Redis
    Enterprise's) on every new connection; older Redis refuses all three. That is three
    wasted replies per connection, counted as failed calls in the operator's `INFO`, and once
    read by the wrong command after a slow connect. Only the options this redis-py knows."""
    known = inspect.signature(AbstractConnection.__init__).parameters
    options: dict[str, Any] = {}
    if "driver_info" in known:
        options["driver_info"] = None
    elif "lib_name" in known:
        options.update(lib_name=None, lib_version=None)
    if "maint_notifications_config" in known:
        from redis.maint_notifications import MaintNotificationsConfig

        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return options


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
        **plain_handshake(),
    )
    return Redis(connection_pool=pool)
