"""What the soak runs against: two daphne workers sharing a throwaway Redis (through a TCP
proxy, so that the soak can cut it) and a fresh PostgreSQL database, answering from the
project's LLM simulator (its own process). Built from the benchmarks' and the tests' shared
parts: bench.procs, bench.redis_server, bench.tcp_proxy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import (
    PYTHON,
    Proc,
    free_port,
    fresh_postgres_database,
    manage,
    server_env,
    start,
    start_daphne,
)
from bench.redis_server import RedisServer, redis_server
from bench.servers import NO_KNOWLEDGE
from bench.tcp_proxy import TcpProxy

DATABASE = "roomchat_soak"
# The simulator's defaults; each question says how long and how fast its answer is.
SIMULATOR_TPS = 25
FIRST_TOKEN_DELAY = 0.2


@dataclass
class Cut:
    """One Redis outage: seconds after the start signal, and how long it lasted."""

    at: float
    seconds: float


@dataclass
class SoakCluster:
    workers: list[Proc]
    redis: RedisServer
    proxy: TcpProxy
    database_url: str
    simulator: Proc
    cuts: list[Cut] = field(default_factory=list)
    _cut_since: float | None = None

    @property
    def ports(self) -> list[int]:
        return [worker.port for worker in self.workers]

    def cut_redis(self, now: float) -> None:
        """Close every Redis connection of the workers and refuse new ones."""
        self.proxy.cut("refuse")
        self._cut_since = now

    def restore_redis(self, now: float) -> None:
        self.proxy.restore()
        if self._cut_since is not None:
            self.cuts.append(Cut(at=self._cut_since, seconds=now - self._cut_since))
        self._cut_since = None

    @property
    def redis_cut(self) -> bool:
        return self._cut_since is not None


@contextmanager
def soak_cluster(
    workdir: Path, *, log_retention: float, extra_env: dict[str, str]
) -> Iterator[SoakCluster]:
    with ExitStack() as stack:
        port = free_port()
        simulator = stack.enter_context(
            start(
                "simulator",
                [
                    PYTHON,
                    "-m",
                    "llmsim",
                    "--port",
                    str(port),
                    "--tps",
                    str(SIMULATOR_TPS),
                    "--first-token-delay",
                    str(FIRST_TOKEN_DELAY),
                ],
                workdir=workdir,
                port=port,
            )
        )
        redis = stack.enter_context(redis_server())
        proxy = stack.enter_context(TcpProxy("127.0.0.1", redis.port))
        database = redis.url.rsplit("/", 1)[-1]
        chroma = workdir / "chroma-empty"
        chroma.mkdir(parents=True, exist_ok=True)
        env = server_env(
            workdir,
            llm_base_url=f"{simulator.url}/v1",
            database_url=fresh_postgres_database(DATABASE),
            chroma_path=chroma,
            collection=NO_KNOWLEDGE,
            redis_url=f"redis://127.0.0.1:{proxy.port}/{database}",
        )
        env.update(
            {
                "CHAT_LOG_RETENTION_SECONDS": str(int(log_retention)),
                # Lines about Redis going away and coming back, and anything worse.
                "DJANGO_LOG_LEVEL": "INFO",
                **extra_env,
            }
        )
        manage(env, "migrate", "--no-input", "-v", "0")
        workers = [
            stack.enter_context(start_daphne(workdir, env, name=f"worker-{index}"))
            for index in range(2)
        ]
        cluster = SoakCluster(
            workers=workers,
            redis=redis,
            proxy=proxy,
            database_url=env["DATABASE_URL"],
            simulator=simulator,
        )
        try:
            yield cluster
        finally:
            if cluster.redis_cut:
                proxy.restore()
