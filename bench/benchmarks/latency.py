"""Added latency per delta, and CPU time per 1,000 delivered deltas, at N concurrent answers.

N members each ask one answer in a room of their own, over `ramp` seconds; the simulator streams
every answer at the configured tokens per second. Latency of a token = the client's receive
time - the simulator's send time (bench.analysis explains the attribution of merged frames).
Only tokens sent while (nearly) all N answers were streaming count (the steady window of
bench.analysis; the whole run when an overloaded server never had them all streaming). Variants, run
one after the other in an order that rotates between repeats:

- server: the chat server, one daphne worker;
- relay: bench.baseline_relay, a minimal `websockets` + `openai` relay;
- direct: the `openai` client reading the simulator (no WebSocket).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from bench.analysis import DELTA_TYPES, check_member, steady_window, summary_ms
from bench.harness import Context, StreamOutcome, question, rotated, run_members
from bench.procs import Proc, start_relay
from bench.profiling import layers, start_profile, top_functions
from bench.servers import single_worker
from bench.sizes import StreamSize
from bench.wire import Member, Variant

VARIANTS: tuple[Variant, ...] = ("server", "relay", "direct")


def steps(ctx: Context, levels: Sequence[StreamSize]) -> int:
    return ctx.repeat * len(levels) * len(VARIANTS)


def run(ctx: Context, levels: Sequence[StreamSize]) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    with ExitStack() as stack:
        server = single_worker(ctx, stack, "latency-daphne")
        relay = stack.enter_context(start_relay(ctx.workdir, base_url=ctx.llm_base_url))
        targets = {"server": server, "relay": relay}
        for variant in ("server", "relay"):
            # Warm up: the worker starts on its first connection; both open their LLM pools.
            stream_run(ctx, variant, StreamSize(answers=2, tokens=5, ramp=0.0), targets)
        for repeat in range(ctx.repeat):
            for index, size in enumerate(levels):
                for variant in rotated(VARIANTS, repeat + index):
                    ctx.progress.set_description(f"latency {size.answers:>3} answers {variant}")
                    profiled = ctx.profile and repeat == 0 and variant == "server"
                    if profiled and size in ctx.sizes.cpu:
                        result, profile = profiled_run(ctx, size, targets)
                    else:
                        result = stream_run(ctx, variant, size, targets)
                    runs.append({"bench": "stream", "repeat": repeat, **result})
                    ctx.progress.update()
    return {"runs": runs, "profile": profile} if profile else {"runs": runs}


def profiled_run(
    ctx: Context, size: StreamSize, targets: dict[str, Proc]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A server run sampled by py-spy (bench.profiling); the profile shares its CPU."""
    raw = ctx.workdir / f"profile-server-{size.answers}.txt"
    spy = start_profile(targets["server"].pid, size.ramp + size.tokens / ctx.sizes.tps, raw)
    result = stream_run(ctx, "server", size, targets)
    if spy is None:
        return result, {"error": "py-spy is not installed (pip install py-spy)"}
    spy.wait(60)
    if not raw.exists():
        return result, {"error": f"py-spy wrote no profile (exit {spy.returncode})"}
    profile = {"answers": size.answers, "raw": str(raw), "layers": layers(raw)}
    profile["top"] = top_functions(raw)
    return result, profile


def members_for(
    ctx: Context, variant: Variant, size: StreamSize, targets: dict[str, Proc]
) -> list[Member]:
    members = []
    for index in range(size.answers):
        room = ctx.new_id("lat")
        if variant == "server":
            url = f"{targets['server'].ws_url}/ws/rooms/{room}/"
        elif variant == "relay":
            url = f"{targets['relay'].ws_url}/{room}"
        else:
            url = ctx.llm_base_url
        offset = size.ramp * index / size.answers
        members.append(Member(url=url, ask=question(room, size.tokens), ask_offset=offset))
    return members


def stream_run(
    ctx: Context, variant: Variant, size: StreamSize, targets: dict[str, Proc]
) -> dict[str, Any]:
    watch: dict[str, int] = {variant: targets[variant].pid} if variant in targets else {}
    timeout = size.tokens / ctx.sizes.tps + size.ramp + 60
    outcome = run_members(
        ctx, variant, members_for(ctx, variant, size, targets), watch=watch, timeout=timeout
    )
    return {
        "variant": variant,
        "answers": size.answers,
        **stream_metrics(outcome, variant, size, ctx.sizes.tps),
    }


def stream_metrics(
    outcome: StreamOutcome, variant: str, size: StreamSize, tps: float
) -> dict[str, Any]:
    checks = [
        check_member(trace, outcome.sends.get(trace.tag or ""), variant) for trace in outcome.traces
    ]
    low, high = steady_window(list(outcome.sends.values()))
    everything = [lat for check in checks for _, lat in check.latencies]
    windowed = [lat for check in checks for sent, lat in check.latencies if low <= sent <= high]
    tokens = sum(check.tokens for check in checks)
    frames = sum(check.frames for check in checks)
    problems = [problem for check in checks for problem in check.problems]
    process_cpu = outcome.cpu.get(variant)
    # Under load an answer may also start late, which the per-delta latency does not show:
    # ask sent -> first delta received, per answer.
    first_deltas = [
        first - trace.ask_at
        for trace in outcome.traces
        if trace.ask_at is not None
        and (first := next((t for t, _, k, _ in trace.frames if k in DELTA_TYPES), None))
        is not None
    ]
    # Where a late start goes: ask sent -> the LLM's request received (the simulator's tap),
    # and for the server ask sent -> `answer.start` received.
    to_request = [
        sent.received - trace.ask_at
        for trace in outcome.traces
        if trace.ask_at is not None and (sent := outcome.sends.get(trace.tag or "")) is not None
    ]
    to_start = [
        start - trace.ask_at
        for trace in outcome.traces
        if trace.ask_at is not None
        and (start := next((t for t, _, k, _ in trace.frames if k == "answer.start"), None))
        is not None
    ]
    metrics: dict[str, Any] = {
        "tokens_per_answer": size.tokens,
        "tokens": tokens,
        "frames": frames,
        "tokens_per_frame": tokens / frames if frames else 0.0,
        "lost": sum(1 for check in checks if check.problems),
        "unfinished": sum(1 for check in checks if check.unfinished),
        "problems": problems[:5],
        "window_s": high - low if math.isfinite(high - low) else 0.0,
        "window_tokens": len(windowed),
        **summary_ms(windowed, "lat"),
        **summary_ms(everything, "lat_all"),
        **summary_ms(first_deltas, "first_delta"),
        **summary_ms(to_request, "ask_to_request"),
        **summary_ms(to_start, "ask_to_start"),
        "offered_tokens_per_s": size.answers * tps,
        "duration_s": outcome.duration,
        "tokens_per_s": tokens / outcome.duration if outcome.duration else 0.0,
        "cpu_s": process_cpu,
        "cpu_ms_per_1k_tokens": (
            process_cpu / tokens * 1e6 if process_cpu is not None and tokens else None
        ),
        "cpu_ms_per_1k_frames": (
            process_cpu / frames * 1e6 if process_cpu is not None and frames else None
        ),
        "simulator_cpu_s": outcome.cpu["simulator"],
        "client_cpu_s": outcome.client_cpu,
        "load_1m": outcome.load,
    }
    return metrics
