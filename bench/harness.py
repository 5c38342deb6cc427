"""What every benchmark shares: the run's context, and running a set of members against one
server (or baseline) while watching the CPU time of the processes involved."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.analysis import Sent
from bench.pool import ClientPool, split
from bench.procs import Proc, post_json
from bench.procstat import cpu_seconds, load_average
from bench.sizes import Sizes
from bench.streams import stream_job
from bench.wire import Member, MemberTrace, StreamJob, Variant


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def set_description(self, desc: str | None = None, refresh: bool = True) -> Any: ...


@dataclass
class Context:
    """One invocation of `bench.run`: its processes, sizes and progress bar."""

    workdir: Path
    pool: ClientPool
    simulator: Proc
    sizes: Sizes
    repeat: int
    progress: Progress
    run_id: str
    # Experiments: extra environment of every chat server, and DATABASE_URL query options.
    server_env: dict[str, str] = field(default_factory=dict)
    db_options: str = ""
    redis_url: str = "redis://127.0.0.1:6379/7"
    profile: bool = False
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.run_id}-{next(self._counter)}"

    @property
    def llm_base_url(self) -> str:
        return f"{self.simulator.url}/v1"

    def take_sends(self, tags: Sequence[str]) -> dict[str, Sent]:
        """The tap's records of these answers (each can be taken once)."""
        found: dict[str, Any] = {}
        for start in range(0, len(tags), 500):
            reply = post_json(
                f"{self.simulator.url}/_bench/sends", {"tags": tags[start : start + 500]}
            )
            if not isinstance(reply, dict):
                raise RuntimeError(f"the tap answered {reply!r}")
            found.update(reply["sends"])
        return {tag: Sent.from_wire(data) for tag, data in found.items()}

    def client_processes(self, members: int) -> int:
        wanted = math.ceil(members / self.sizes.per_client_process)
        return max(1, min(self.pool.processes, wanted))


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """`items` starting at `shift`: interleaves the order of variants between repeats."""
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def question(tag: str, tokens: int, text: str = "What does the room say today?") -> str:
    """A question the tap recognises (`bench:TAG`) asking the simulator for `tokens` tokens."""
    return f"{text} bench:{tag} [[sim tokens={tokens}]]"


@dataclass
class StreamOutcome:
    traces: list[MemberTrace]
    sends: dict[str, Sent]
    cpu: dict[str, float]
    client_cpu: float
    duration: float
    connect_seconds: float
    load: float


def run_members(
    ctx: Context,
    variant: Variant,
    members: Sequence[Member],
    *,
    watch: Mapping[str, int],
    timeout: float,
) -> StreamOutcome:
    """Connect `members` from the client processes, then start them together and wait for the
    end of their answers; CPU time of the `watch`ed processes (and the simulator) is taken
    between the start signal and the last member's end."""
    watched = {**watch, "simulator": ctx.simulator.pid}
    jobs = [
        StreamJob(variant=variant, members=part, timeout=timeout)
        for part in split(list(members), ctx.client_processes(len(members)))
    ]
    barrier = ctx.pool.barrier(1)
    futures = [ctx.pool.submit(stream_job, job, barrier) for job in jobs]
    barrier.gather(0, len(jobs), futures, timeout=120 + len(members) / 10)
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    started = time.monotonic()
    barrier.release(0)
    results = [future.result(timeout=timeout + 120) for future in futures]
    duration = time.monotonic() - started
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    traces = [trace for result in results for trace in result.traces]
    tags = sorted({trace.tag for trace in traces if trace.tag})
    return StreamOutcome(
        traces=traces,
        sends=ctx.take_sends(tags),
        cpu=cpu,
        client_cpu=sum(result.cpu_seconds for result in results),
        duration=duration,
        connect_seconds=max(result.connect_seconds for result in results),
        load=load_average()[0],
    )
