"""Is this worker ready to serve? (`/readyz`.) Each dependency is checked with a timeout, in
parallel, so an answer comes within CHAT_READY_TIMEOUT_SECONDS whatever hangs: the database,
Redis (when configured), Chroma and the embedding model must be usable; the LLM's reachability
is reported but does not make the worker unready (without it answers fail with a clear error,
and every other part of a room works).

What failed is said by name and a short reason, never an address, a path or a secret: the
details go to this worker's log, once when a check starts failing and once when it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection

from chat.llm import get_provider
from chat.retrieval.chroma import get_client
from chat.retrieval.embeddings import get_embedding_function

logger = logging.getLogger(__name__)

# The blocking checks (database, Chroma, embedding) run here, never more than one of each kind
# at a time: a dependency that hangs holds one thread, not one per probe.
_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")
# A usable LLM or embedding model is not asked again for this long (they may bill).
CACHE_SUCCESS_SECONDS = 30.0


@dataclass
class _Check:
    name: str
    run: Callable[[float], Awaitable[None]]
    fatal: bool = True
    cache_success: bool = False
    in_flight: asyncio.Future[None] | None = None
    ok_until: float = 0.0
    failing: bool = False


@dataclass
class Readiness:
    """The checks of this process (one instance: `readiness()`)."""

    checks: list[_Check] = field(default_factory=list)

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the JSON body of `/readyz`)."""
        timeout = settings.CHAT_READY_TIMEOUT_SECONDS
        results = await asyncio.gather(*(self._one(check, timeout) for check in self.checks))
        body: dict[str, Any] = {"checks": {}, "failed": []}
        for check, result in zip(self.checks, results, strict=True):
            body["checks"][check.name] = result
            if not result["ok"] and check.fatal:
                body["failed"].append(check.name)
        ready = not body["failed"]
        body["status"] = "ready" if ready else "unready"
        return ready, body

    async def _one(self, check: _Check, within: float) -> dict[str, Any]:
        result: dict[str, Any] = {"ok": True}
        if not check.fatal:
            result["fatal"] = False
        if check.name == "redis" and not settings.REDIS_URL:
            return {**result, "configured": False}
        began = time.monotonic()
        if check.cache_success and began < check.ok_until:
            return {**result, "cached": True}
        reason = None
        if check.in_flight is not None and not check.in_flight.done():
            # The last one has not come back (a hung dependency): do not pile up another.
            reason, detail = "the previous check has not finished", "still waiting"
        else:
            check.in_flight = asyncio.ensure_future(check.run(within))
            # Its outcome, once it times out here, is read by nobody: retrieve it.
            check.in_flight.add_done_callback(_retrieved)
            try:
                # Shielded: a check that times out goes on (its thread cannot be stopped);
                # the next probe reports it unfinished rather than start another.
                await asyncio.wait_for(asyncio.shield(check.in_flight), within)
            except TimeoutError:
                reason = detail = f"no answer within {within:g} s"
            except Exception as err:
                # The kind of failure only: its text may hold an address, a path or a
                # server's message. The text goes to the log.
                reason = f"failed ({type(err).__name__})"
                detail = (str(err).strip() or type(err).__name__).splitlines()[0][:300]
        result["seconds"] = round(time.monotonic() - began, 4)
        if reason is None:
            if check.failing:
                logger.info("Readiness: %s is usable again", check.name)
            check.failing = False
            if check.cache_success:
                check.ok_until = time.monotonic() + CACHE_SUCCESS_SECONDS
            return result
        if not check.failing:  # one line per outage, not one a probe
            level = logging.WARNING if check.fatal else logging.INFO
            logger.log(level, "Readiness: %s failed (%s)", check.name, detail)
        check.failing = True
        return {**result, "ok": False, "error": reason}


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def _in_thread(function: Callable[[], object]) -> None:
    await asyncio.get_running_loop().run_in_executor(_THREADS, function)


async def _database(within: float) -> None:
    def query() -> None:
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            # A readiness thread holds no connection between probes.
            connection.close()

    await _in_thread(query)


async def _redis(within: float) -> None:
    # A connection of its own, not the room log's pool: its retries would outlast `within`,
    # and a probe must see Redis as a new client would.
    from redis.asyncio import Redis

    from chat.realtime.redis_client import plain_handshake

    client = Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=within,
        socket_timeout=within,
        **plain_handshake(),
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _chroma(within: float) -> None:
    await _in_thread(lambda: get_client().heartbeat())


async def _embedding(within: float) -> None:
    def embed() -> None:
        vectors = get_embedding_function()(["ready"])
        if len(vectors) != 1 or not len(vectors[0]):
            raise ValueError("the embedding model returned no vector")

    await _in_thread(embed)


async def _llm(within: float) -> None:
    provider = get_provider()
    probe = getattr(provider, "probe", None)
    if probe is not None:
        await probe(within)


_readiness: Readiness | None = None


def readiness() -> Readiness:
    global _readiness
    if _readiness is None:
        _readiness = Readiness(
            [
                _Check("database", _database),
                _Check("redis", _redis),
                _Check("chroma", _chroma),
                _Check("embedding", _embedding, cache_success=True),
                _Check("llm", _llm, fatal=False, cache_success=True),
            ]
        )
    return _readiness
