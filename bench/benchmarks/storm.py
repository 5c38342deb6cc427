"""Reconnect storm: a worker dies and all its members come back on another one at once.

`storm_members` members in `storm_rooms` rooms join worker A (the chat server: two daphne
workers sharing Redis and PostgreSQL, as the fan-out's `server-2w`). Each room sees an answer
before the kill, and every `storm_long_every`-th room has one still streaming on A when A is
SIGKILLed. Every member sees its socket drop and reconnects to worker B at once with
`after=<the last seq it got>`. Measured: the seconds from the kill until every member had its
welcome from B, the connects per second B made in that time (members / that time), B's CPU time
per connect, and, per member, that nothing was lost or repeated: its seqs run on without a gap
or a repeat across both connections, the resumed welcome's seq is the `after` sent, the answers
running on A end exactly once (B's reaper ends them `interrupted`), and a last message said
after everyone is back reaches everyone (each room's members end at the same seq).

The relay does the same (its A killed, every member reconnecting to its B): what the same wave
of handshakes costs a minimal WebSocket server, side by side in the same run. So does
`daphne-floor` (bench.floor_app): daphne accepting and sending a welcome, nothing more: the
floor of the chat server's own stack (Twisted, Autobahn, daphne, asyncio) on this machine.

`--profile` samples B with py-spy from the kill until everyone is back and breaks its time down
by the steps of a connect (bench.profiling.connect_steps).
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from typing import Any, Literal

from bench.benchmarks.fanout import cluster_missing
from bench.harness import Context, question, rotated
from bench.pool import split
from bench.procs import Proc, start_daphne, start_relay
from bench.procstat import cpu_seconds, load_average
from bench.profiling import connect_steps, start_profile, top_functions
from bench.servers import redis_workers
from bench.storm_clients import StormJob, StormJobResult, StormMember, connect_only, storm_job

VARIANTS = ("server-2w", "relay", "daphne-floor")
# A database of its own: the fan-out benchmark drops and creates `roomchat_bench` (another run
# on the same machine once dropped it under this one).
DATABASE = "roomchat_bench_storm"
_KINDS: dict[str, Literal["server", "relay", "floor"]] = {
    "server-2w": "server",
    "relay": "relay",
    "daphne-floor": "floor",
}
# Daphne's listen backlog in this benchmark, as the relay's (bench.baseline_relay): Twisted's
# default of 50 drops most of a 5,000-connection wave's SYNs, and the clients' kernels retry
# them after 1, 3, 7 s, which would measure the kernel's retry timer, not the server.
BACKLOG = 2048


def steps(ctx: Context) -> int:
    return ctx.repeat * len(VARIANTS)


def run(ctx: Context) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    missing = cluster_missing(ctx.redis_url)
    variants = [v for v in VARIANTS if not (v == "server-2w" and missing)]
    if missing:
        skipped.append({"bench": "storm", "variant": "server-2w", "reason": missing})
        ctx.progress.update(ctx.repeat)
    for repeat in range(ctx.repeat):
        for variant in rotated(variants, repeat):
            ctx.progress.set_description(f"storm {variant}: starting servers")
            with ExitStack() as stack:
                if variant == "server-2w":
                    a, b = redis_workers(
                        ctx,
                        stack,
                        f"storm-{repeat}",
                        workers=2,
                        redis_url=ctx.redis_url,
                        database=DATABASE,
                        backlog=BACKLOG,
                    )
                elif variant == "relay":
                    a, b = (
                        stack.enter_context(
                            start_relay(
                                ctx.workdir, base_url=ctx.llm_base_url, name=f"storm-relay-{i}"
                            )
                        )
                        for i in range(2)
                    )
                else:
                    a, b = (
                        stack.enter_context(
                            start_daphne(
                                ctx.workdir,
                                os.environ,
                                name=f"storm-floor-{i}",
                                backlog=BACKLOG,
                                app="bench.floor_app:application",
                            )
                        )
                        for i in range(2)
                    )
                ctx.progress.set_description(f"storm {variant}")
                profiled = ctx.profile and repeat == 0 and variant == "server-2w"
                result, found = storm_run(ctx, variant, a, b, profile=profiled)
                if found:
                    profile = found
                runs.append({"bench": "storm", "repeat": repeat, **result})
            ctx.progress.update()
    outcome: dict[str, Any] = {"runs": runs, "skipped": skipped}
    if profile:
        outcome["profile"] = profile
    return outcome


def members(ctx: Context) -> list[StormMember]:
    """`storm_members` members dealt over `storm_rooms` rooms; each room's first is its
    speaker."""
    sizes = ctx.sizes
    prefix = ctx.new_id("storm")
    specs: list[StormMember] = []
    for index in range(sizes.storm_members):
        room = index % sizes.storm_rooms
        first = index < sizes.storm_rooms
        specs.append(
            StormMember(
                room=f"{prefix}-{room}",
                speaker=first,
                long=first and room % sizes.storm_long_every == 0,
            )
        )
    return specs


def _warm(ctx: Context, variant: str, procs: list[Proc]) -> None:
    """A few members through each process first, so the storm does not pay for first use
    (imports, the runtime, the first database connection)."""
    kind = _KINDS[variant]
    for proc in procs:
        job = StormJob(
            variant=kind,
            url_a=proc.ws_url,
            url_b=proc.ws_url,
            members=[StormMember(room=ctx.new_id("warm")) for _ in range(4)],
            short_question="",
            long_question="",
        )
        ctx.pool.submit(connect_only, job).result(timeout=120)


def storm_run(
    ctx: Context, variant: str, a: Proc, b: Proc, *, profile: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    _warm(ctx, variant, [a, b])
    kind = _KINDS[variant]
    specs = members(ctx)
    tag = ctx.new_id("storm")
    jobs = [
        StormJob(
            variant=kind,
            url_a=a.ws_url,
            url_b=b.ws_url,
            members=part,
            short_question=question(f"{tag}-short", 5),
            long_question=question(f"{tag}-long", 2000),
            timeout=ctx.sizes.storm_timeout,
        )
        for part in split(specs, ctx.client_processes(len(specs)))
    ]
    barrier = ctx.pool.barrier(3)
    futures = [ctx.pool.submit(storm_job, job, barrier) for job in jobs]
    wait = 120 + len(specs) / 10
    joined = sum(barrier.gather(0, len(jobs), futures, timeout=wait))
    barrier.release(0)
    barrier.gather(1, len(jobs), futures, timeout=ctx.sizes.storm_timeout + 60)
    raw = ctx.workdir / f"profile-storm-{variant}.txt"
    spy = start_profile(b.pid, ctx.sizes.storm_profile_seconds, raw) if profile else None
    if spy is not None:
        time.sleep(1.0)  # py-spy attaches before the wave comes
    cpu_before = cpu_seconds(b.pid)
    load = load_average()[0]
    killed_at = time.time()
    os.kill(a.pid, signal.SIGKILL)
    a.popen.wait()
    barrier.release(1)
    back_count = sum(barrier.gather(2, len(jobs), futures, timeout=ctx.sizes.storm_timeout + 60))
    cpu = cpu_seconds(b.pid) - cpu_before
    barrier.release(2)
    limit = ctx.sizes.storm_timeout + 120
    results: list[StormJobResult] = [future.result(timeout=limit) for future in futures]
    found: dict[str, Any] = {}
    if spy is not None:
        spy.wait(timeout=ctx.sizes.storm_profile_seconds + 30)
        if raw.exists():
            found = {
                "members": len(specs),
                "steps": connect_steps(raw),
                "top": top_functions(raw, 25),
            }
        else:
            found = {"error": "py-spy wrote no profile"}
    back_at = sorted(t for r in results for t in r.back_at)
    dropped = [t for r in results for t in r.dropped_at]
    last_back = back_at[-1] - killed_at if back_at else None
    disagree = 0
    seqs: dict[str, set[int]] = {}
    for result in results:
        for room, lasts in result.last_seq.items():
            seqs.setdefault(room, set()).update(lasts)
    if kind == "server":
        disagree = sum(1 for lasts in seqs.values() if len(lasts) > 1)
    lost = sum(r.lost for r in results)
    return (
        {
            "variant": variant,
            "members": len(specs),
            "rooms": ctx.sizes.storm_rooms,
            "joined": joined,
            "back": back_count,
            "resumed": sum(r.resumed for r in results),
            "full_welcomes": sum(r.full for r in results),
            "lost": lost + disagree + (len(specs) - back_count),
            "rooms_disagreeing": disagree,
            "problems": [p for r in results for p in r.problems][:10],
            "back_s": last_back,
            "back_p50_s": back_at[len(back_at) // 2] - killed_at if back_at else None,
            "first_drop_s": min(dropped) - killed_at if dropped else None,
            "connects_per_s": back_count / last_back if last_back else None,
            "join_per_s": joined / max(r.join_seconds for r in results),
            "cpu_ms_per_connect": cpu / back_count * 1000 if back_count else None,
            "retries": sum(r.retries for r in results),
            "client_cpu_s": sum(r.cpu_seconds for r in results),
            "load_1m": load,
        },
        found,
    )
