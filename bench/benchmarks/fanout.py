"""Fan-out: one answer to every member of a room; delivery latency and frames lost.

M members join one room, then member 0 asks. Every member must receive every room event, in
seq order from its welcome's seq, with the deltas joined exactly equal to what the simulator
sent and to `answer.end.text`. Latency per (member, token), attributed as in bench.analysis.
Variants, in an order that rotates between repeats:

- server-2w: the chat server, two daphne workers sharing Redis (REDIS_URL) and PostgreSQL,
  members alternating between the workers, the asker on the first; the ask comes
  `fanout_settle` seconds after every member joined (the room is quiet again);
- server-2w-joining: the same, but the ask comes 0.5 s after the joins, while the presence
  updates of 200 joins are still being delivered (a class starting, a meeting link shared);
- server-1w: one worker with the embedded backends (what Redis costs, by difference);
- relay: the baseline relay broadcasting each delta to the room (`websockets.broadcast`).
"""

from __future__ import annotations

import importlib.util
import socket
import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.analysis import check_member, summary_ms
from bench.harness import Context, StreamOutcome, question, rotated, run_members
from bench.procs import Proc, start_relay
from bench.profiling import layers, start_profile, top_functions
from bench.servers import redis_workers, single_worker
from bench.wire import Member, Variant

VARIANTS = ("server-2w", "server-2w-joining", "server-1w", "relay")
JOINING_SETTLE = 0.5
DATABASE = "roomchat_bench"
POSTGRES_PORT = 5432


def steps(ctx: Context) -> int:
    return ctx.repeat * len(VARIANTS)


def cluster_missing(redis_url: str) -> str | None:
    """Why the two-worker variants cannot run here (no Redis backend in the code, no Redis, no
    PostgreSQL), or None."""
    for module in ("chat.realtime.redis_log", "chat.realtime.redis_coordination"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not in the code base yet"
    parts = urlsplit(redis_url)
    for what, port in (("Redis", parts.port or 6379), ("PostgreSQL", POSTGRES_PORT)):
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", port), 2):
                pass
        except OSError as err:
            return f"no {what} on port {port}: {err}"
    return None


def run(ctx: Context) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    missing = cluster_missing(ctx.redis_url)
    variants = [v for v in VARIANTS if not (v.startswith("server-2w") and missing)]
    if missing:
        for variant in ("server-2w", "server-2w-joining"):
            skipped.append({"bench": "fanout", "variant": variant, "reason": missing})
        ctx.progress.update(ctx.repeat * 2)
    with ExitStack() as stack:
        ctx.progress.set_description("fanout: starting servers")
        targets: dict[str, list[Proc]] = {
            "server-1w": [single_worker(ctx, stack, "fanout-daphne")],
            "relay": [
                stack.enter_context(
                    start_relay(ctx.workdir, base_url=ctx.llm_base_url, name="fanout-relay")
                )
            ],
        }
        if not missing:
            targets["server-2w"] = redis_workers(
                ctx,
                stack,
                "fanout-cluster",
                workers=2,
                redis_url=ctx.redis_url,
                database=DATABASE,
            )
            targets["server-2w-joining"] = targets["server-2w"]
        for variant in variants:
            fanout_run(ctx, variant, targets[variant], members=2, tokens=5)  # warm-up
        for repeat in range(ctx.repeat):
            for variant in rotated(variants, repeat):
                ctx.progress.set_description(f"fanout {variant}")
                spies = []
                if ctx.profile and repeat == 0 and variant.startswith("server-2w"):
                    spies = profile_workers(ctx, targets[variant], variant)
                result = fanout_run(
                    ctx,
                    variant,
                    targets[variant],
                    members=ctx.sizes.fanout_members,
                    tokens=ctx.sizes.fanout_tokens,
                )
                if spies:
                    profiles.append(collect_profiles(spies, variant))
                runs.append({"bench": "fanout", "repeat": repeat, **result})
                ctx.progress.update()
    out: dict[str, Any] = {"runs": runs, "skipped": skipped}
    return {**out, "profiles": profiles} if profiles else out


Spy = tuple[str, Any, Path]


def profile_workers(ctx: Context, procs: list[Proc], variant: str) -> list[Spy]:
    """py-spy on each worker for the whole run: the joins, the ask and the answer."""
    settle = JOINING_SETTLE if variant.endswith("-joining") else ctx.sizes.fanout_settle
    seconds = settle + ctx.sizes.fanout_tokens / ctx.sizes.tps + 5
    spies: list[Spy] = []
    for index, proc in enumerate(procs):
        raw = ctx.workdir / f"profile-{variant}-worker{index}.txt"
        spy = start_profile(proc.pid, seconds, raw)
        if spy is not None:
            spies.append((f"worker {index}", spy, raw))
    return spies


def collect_profiles(spies: list[Spy], variant: str) -> dict[str, Any]:
    profiles: dict[str, Any] = {"variant": variant, "workers": {}}
    for name, spy, raw in spies:
        spy.wait(60)
        if raw.exists():
            profiles["workers"][name] = {
                "raw": str(raw),
                "layers": layers(raw),
                "top": top_functions(raw),
            }
    return profiles


def fanout_run(
    ctx: Context, variant: str, procs: list[Proc], *, members: int, tokens: int
) -> dict[str, Any]:
    room = ctx.new_id("fan")
    kind: Variant = "relay" if variant == "relay" else "server"
    settle = JOINING_SETTLE if variant.endswith("-joining") else ctx.sizes.fanout_settle
    specs = []
    for index in range(members):
        proc = procs[index % len(procs)]
        url = f"{proc.ws_url}/{room}" if kind == "relay" else f"{proc.ws_url}/ws/rooms/{room}/"
        # The asker asks `fanout_settle` seconds after the start signal (every member joined).
        ask = question(room, tokens) if index == 0 else None
        specs.append(Member(url=url, ask=ask, ask_offset=settle))
    watch = {f"{variant}-{index}": proc.pid for index, proc in enumerate(procs)}
    timeout = settle + tokens / ctx.sizes.tps + 60
    outcome = run_members(ctx, kind, specs, watch=watch, timeout=timeout)
    return {
        "variant": variant,
        "settle_s": settle,
        "members": members,
        "workers": len(procs),
        **fanout_metrics(outcome, kind, room, watch),
    }


def _worst_at(outcome: StreamOutcome, latencies: list[tuple[float, float]]) -> float | None:
    """When the slowest 1% of deliveries were sent by the LLM, in seconds after the ask
    (their median): whether the tail is the answer's start (joins, presence) or spread."""
    asked = [t.ask_at for t in outcome.traces if t.ask_at is not None]
    if not asked or not latencies:
        return None
    worst = sorted(latencies, key=lambda item: item[1])[-max(1, len(latencies) // 100) :]
    return statistics.median(sent_at for sent_at, _ in worst) - asked[0]


def _presence_until(outcome: StreamOutcome) -> float | None:
    """Seconds from the ask to the last presence frame any member received."""
    asked = [t.ask_at for t in outcome.traces if t.ask_at is not None]
    last = [t.last_other_at for t in outcome.traces if t.last_other_at is not None]
    return max(last) - asked[0] if asked and last else None


def fanout_metrics(
    outcome: StreamOutcome, kind: str, room: str, watch: dict[str, int]
) -> dict[str, Any]:
    sent = outcome.sends.get(room)
    checks = [check_member(trace, sent, kind) for trace in outcome.traces]
    timed = [item for check in checks for item in check.latencies]
    latencies = [lat for _, lat in timed]
    deliveries = sum(check.tokens for check in checks)
    frames = sum(check.frames for check in checks)
    problems = [problem for check in checks for problem in check.problems]
    cpu = sum(outcome.cpu[name] for name in watch)
    return {
        "tokens_per_answer": len(sent.tokens) if sent else 0,
        "deliveries": deliveries,
        "frames": frames,
        "lost": sum(1 for check in checks if check.problems),
        "unfinished": sum(1 for check in checks if check.unfinished),
        # Presence frames per member after the start signal, and when the last one arrived
        # relative to the ask: the join storm the answer streams into.
        "presence_frames_per_member": sum(t.other_frames for t in outcome.traces)
        / max(1, len(outcome.traces)),
        "presence_kib_per_member": sum(t.other_bytes for t in outcome.traces)
        / max(1, len(outcome.traces))
        / 1024,
        "presence_until_s": _presence_until(outcome),
        "worst_sent_at_s": _worst_at(outcome, timed),
        "problems": problems[:5],
        **summary_ms(latencies, "lat"),
        "cpu_s": cpu,
        "cpu_ms_per_1k_deliveries": cpu / deliveries * 1e6 if deliveries else None,
        "simulator_cpu_s": outcome.cpu["simulator"],
        "client_cpu_s": outcome.client_cpu,
        "load_1m": outcome.load,
    }
