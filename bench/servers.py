"""The chat server as the benchmarks run it: daphne workers of this project, configured by the
environment only (`bench.procs.server_env`), with a database and a knowledge base of their own."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

from bench.harness import Context
from bench.procs import (
    Proc,
    fresh_postgres_database,
    knowledge_base,
    manage,
    server_env,
    start_daphne,
)

# The collection the server searches. Delivery benchmarks use one that does not exist, so
# retrieval costs a Chroma lookup and nothing more (retrieval is the TTFD benchmark's business).
KNOWLEDGE = "knowledge"
NO_KNOWLEDGE = "bench-empty"


def chroma_dir(ctx: Context, workdir: Path, *, knowledge: bool) -> Path:
    """A Chroma directory for one benchmark: a private copy of the ingested sample knowledge
    base (the cached one is never opened by a server), or an empty one."""
    target = workdir / ("chroma-knowledge" if knowledge else "chroma-empty")
    if not target.exists():
        if knowledge:
            env = server_env(
                workdir,
                llm_base_url=ctx.llm_base_url,
                database_url=f"sqlite:///{workdir / 'ingest.sqlite3'}",
                chroma_path=target,
                collection=KNOWLEDGE,
            )
            shutil.copytree(knowledge_base(env), target)
        else:
            target.mkdir(parents=True)
    return target


def single_worker_env(ctx: Context, name: str, *, knowledge: bool = False) -> dict[str, str]:
    """The environment of one daphne worker with the embedded backends (in-process room log,
    SQLite in its own directory), load limits raised."""
    workdir = ctx.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{workdir / 'db.sqlite3'}"
    if ctx.db_options:
        database += f"?{ctx.db_options}"
    env = server_env(
        workdir,
        llm_base_url=ctx.llm_base_url,
        database_url=database,
        chroma_path=chroma_dir(ctx, workdir, knowledge=knowledge),
        collection=KNOWLEDGE if knowledge else NO_KNOWLEDGE,
    )
    env.update(ctx.server_env)
    return env


def single_worker(ctx: Context, stack: ExitStack, name: str, *, knowledge: bool = False) -> Proc:
    """One daphne worker (see `single_worker_env`), migrated and listening."""
    env = single_worker_env(ctx, name, knowledge=knowledge)
    manage(env, "migrate", "--no-input", "-v", "0")
    return stack.enter_context(start_daphne(ctx.workdir / name, env, name=name))


def redis_workers(
    ctx: Context,
    stack: ExitStack,
    name: str,
    *,
    workers: int,
    redis_url: str,
    database: str,
    backlog: int | None = None,
) -> list[Proc]:
    """Daphne workers sharing Redis (room log, coordination, channel layer) and PostgreSQL;
    `backlog`: their listen backlog (daphne's default: Twisted's 50)."""
    workdir = ctx.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    env = server_env(
        workdir,
        llm_base_url=ctx.llm_base_url,
        database_url=fresh_postgres_database(database),
        chroma_path=chroma_dir(ctx, workdir, knowledge=False),
        collection=NO_KNOWLEDGE,
        redis_url=redis_url,
    )
    env.update(ctx.server_env)
    manage(env, "migrate", "--no-input", "-v", "0")
    return [
        stack.enter_context(start_daphne(workdir, env, name=f"{name}-{index}", backlog=backlog))
        for index in range(workers)
    ]
