"""Idle connections per worker and memory per connection.

A fresh process (a daphne worker, or the baseline relay) gets `idle_warm` connections; its RSS
(VmRSS of /proc/PID/status) is read once it settled. Then the rest up to `idle_connections`,
`idle_room_size` members per room; after `idle_hold` seconds of idleness the RSS is read again.
Memory per connection = RSS growth / connections added. Every socket then sends a ping and must
get its pong (the connection is still served), and all close; the RSS after closing shows what
the process keeps, and the RSS once the server's room-state grace has passed (the worker forgets
rooms nobody uses: `CHAT_ROOM_STATE_GRACE_SECONDS`, set short for the benchmark in
bench/procs.py) shows what it keeps for good.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

from bench.harness import Context, rotated
from bench.idle_clients import IdleJob, idle_job
from bench.pool import split
from bench.procs import Proc, start_relay
from bench.procstat import cpu_seconds, rss_bytes
from bench.servers import single_worker

VARIANTS = ("server", "relay")
_SETTLE = 1.0
# The server's grace for idle rooms (bench/procs.py) plus its sweep interval (chat/runtime.py,
# IDLE_SWEEP_SECONDS) and a settle: after this, the closed connections' rooms are gone. After a
# crowd (at least CHAT_MEMORY_RECLAIM_AFTER_CLOSES, 1,000, closed) one more sweep: the one after
# the closes settled gives the memory back (chat.reclaim).
_AFTER_GRACE = 2.0 + 10.0 + 2.0
_AFTER_RECLAIM = _AFTER_GRACE + 10.0
_RECLAIM_AFTER_CLOSES = 1000
_MIB = 1024 * 1024


def repeats(ctx: Context) -> int:
    return min(ctx.repeat, ctx.sizes.idle_repeat)


def steps(ctx: Context) -> int:
    return repeats(ctx) * len(VARIANTS)


def run(ctx: Context) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats(ctx)):
        for variant in rotated(VARIANTS, repeat):
            ctx.progress.set_description(f"idle {variant}")
            with ExitStack() as stack:
                name = f"idle-{variant}-{repeat}"
                if variant == "server":
                    proc = single_worker(ctx, stack, name)
                else:
                    proc = stack.enter_context(
                        start_relay(ctx.workdir, base_url=ctx.llm_base_url, name=name)
                    )
                runs.append({"bench": "idle", "repeat": repeat, **idle_run(ctx, variant, proc)})
            ctx.progress.update()
    return {"runs": runs}


def urls(ctx: Context, variant: str, proc: Proc, count: int) -> list[str]:
    prefix = ctx.new_id("idle")
    size = ctx.sizes.idle_room_size
    if variant == "server":
        return [f"{proc.ws_url}/ws/rooms/{prefix}-{i // size}/" for i in range(count)]
    return [f"{proc.ws_url}/{prefix}-{i // size}" for i in range(count)]


def idle_run(ctx: Context, variant: str, proc: Proc) -> dict[str, Any]:
    sizes = ctx.sizes
    every = urls(ctx, variant, proc, sizes.idle_connections)
    warm, rest = every[: sizes.idle_warm], every[sizes.idle_warm :]
    parts = ctx.client_processes(len(every))
    jobs = [
        IdleJob(warm=w, urls=r) for w, r in zip(split(warm, parts), split(rest, parts), strict=True)
    ]
    barrier = ctx.pool.barrier(3)
    futures = [ctx.pool.submit(idle_job, job, barrier) for job in jobs]
    warm_count = sum(barrier.gather(0, len(jobs), futures, timeout=300))
    time.sleep(_SETTLE)
    rss_warm = rss_bytes(proc.pid)
    started = time.monotonic()
    barrier.release(0)
    connected = sum(barrier.gather(1, len(jobs), futures, timeout=900))
    connect_seconds = time.monotonic() - started
    cpu_before = cpu_seconds(proc.pid)
    time.sleep(sizes.idle_hold)
    rss_full = rss_bytes(proc.pid)
    idle_cpu = cpu_seconds(proc.pid) - cpu_before
    barrier.release(1)
    alive = sum(barrier.gather(2, len(jobs), futures, timeout=300))
    barrier.release(2)
    results = [future.result(timeout=300) for future in futures]
    time.sleep(_SETTLE)
    rss_closed = rss_bytes(proc.pid)
    time.sleep(_AFTER_RECLAIM if connected >= _RECLAIM_AFTER_CLOSES else _AFTER_GRACE)
    rss_after_grace = rss_bytes(proc.pid)
    added = connected - warm_count
    errors = [error for result in results for error in result.errors]
    return {
        "variant": variant,
        "connections": sizes.idle_connections,
        "connected": connected,
        "failed": sum(result.failed for result in results),
        "alive": alive,
        "lost": sizes.idle_connections - alive,
        "problems": errors[:5],
        "connect_per_s": added / connect_seconds if connect_seconds else 0.0,
        "rss_warm_mib": rss_warm / _MIB,
        "rss_full_mib": rss_full / _MIB,
        "rooms": -(-sizes.idle_connections // sizes.idle_room_size),
        "rss_closed_mib": rss_closed / _MIB,
        "rss_after_grace_mib": rss_after_grace / _MIB,
        "kib_per_connection": (rss_full - rss_warm) / added / 1024 if added else None,
        "idle_cpu_ms_per_s": idle_cpu / sizes.idle_hold * 1000,
        "client_cpu_s": sum(result.cpu_seconds for result in results),
    }
