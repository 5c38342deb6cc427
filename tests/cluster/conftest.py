"""Fixtures of the multi-worker tests: one throwaway Redis and one fresh PostgreSQL database
per session, the LLM simulator (a thread: it outlives every test's event loop), and
`make_cluster` to start real daphne workers with a test's own settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.clients import close_open_clients
from tests.cluster.harness import (
    Cluster,
    RedisServer,
    cluster,
    postgres_database,
    redis_server,
)

ClusterFactory = Callable[..., Cluster]


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Closes, in the test's own loop, every client the test opened and left open."""
    yield
    await close_open_clients()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sim() -> Iterator[Any]:
    """The OpenAI-compatible simulator the workers' real `openai` client talks to."""
    from llmsim import SimulatorThread

    with SimulatorThread(tps=200, first_token_delay=0.0, tokens=12) as simulator:
        yield simulator


@pytest.fixture
def make_cluster(
    shared_redis: RedisServer,
    database_url: str,
    sim: Any,
    knowledge_base: str,
    tmp_path: Path,
) -> Iterator[ClusterFactory]:
    """Start a cluster: `make_cluster(workers=2, env={...}, redis=..., balancer=False)`."""
    with ExitStack() as stack:

        def make(
            *,
            workers: int = 2,
            env: dict[str, str] | None = None,
            redis: RedisServer | None = None,
            balancer: bool = False,
        ) -> Cluster:
            tmp = tmp_path / f"cluster-{uuid.uuid4().hex[:6]}"
            tmp.mkdir()
            settings = {"OPENAI_BASE_URL": sim.base_url, "OPENAI_API_KEY": "sim-key"}
            return stack.enter_context(
                cluster(
                    redis=redis or shared_redis,
                    database_url=database_url,
                    tmp=tmp,
                    workers=workers,
                    balancer=balancer,
                    env={**settings, **(env or {})},
                )
            )

        yield make


@pytest.fixture
def room() -> str:
    """A room name of this test's own (tests share Redis and the database)."""
    return f"r{uuid.uuid4().hex[:10]}"
