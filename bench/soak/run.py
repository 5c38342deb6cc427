"""The soak's orchestrator: start the cluster and the client processes, cut Redis on schedule,
sample resources, then put together what the clients saw and check it against PostgreSQL and
Redis (see bench/soak/__init__.py)."""

from __future__ import annotations

import argparse
import queue
import random
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import redis
from tqdm import tqdm

from bench.pool import ClientPool, split
from bench.procstat import load_average, machine, raise_open_files_limit
from bench.run import code_version
from bench.soak import report, resources, verify
from bench.soak.clients import soak_job
from bench.soak.cluster import SoakCluster, soak_cluster
from bench.soak.plan import FULL, QUICK, Answers, Slot, SoakJob, SoakJobResult, SoakSize, Timeline

TOLERANCE = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Hold many connections in many rooms on two workers, with churn and Redis "
        "cuts; check every event, every answer and every row; watch the resources.",
    )
    parser.add_argument("--quick", action="store_true", help="5 minutes, 200 connections, 20 rooms")
    parser.add_argument("--minutes", type=float, help="60 (quick: 5)")
    parser.add_argument("--connections", type=int, help="1000 (quick: 200)")
    parser.add_argument("--rooms", type=int, help="100 (quick: 20)")
    parser.add_argument(
        "--redis-cut-every", type=float, metavar="SECONDS", help="600 (quick: 60); 0: none"
    )
    parser.add_argument("--redis-cut-seconds", type=float, metavar="S", help="10 (quick: 5)")
    parser.add_argument("--warmup", type=float, metavar="SECONDS", help="600 (quick: 60)")
    parser.add_argument("--sample-every", type=float, metavar="SECONDS", help="30 (quick: 10)")
    parser.add_argument(
        "--ask-every",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="seconds between two questions in a room, uniform (30 60)",
    )
    parser.add_argument(
        "--leave-every", type=float, metavar="SECONDS", help="mean per member (900; quick 180)"
    )
    parser.add_argument(
        "--reconnect-every", type=float, metavar="SECONDS", help="mean per member (600; quick 150)"
    )
    parser.add_argument("--client-processes", type=int, default=2, help="client processes (2)")
    parser.add_argument("--seed", type=int, default=None, help="for the churn and the questions")
    parser.add_argument("--out", action="append", type=Path, default=[], help=".json or .md")
    parser.add_argument("--workdir", type=Path, default=None, help="logs (a temp directory)")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="experiments"
    )
    return parser.parse_args(argv)


def sized(args: argparse.Namespace) -> SoakSize:
    """The quick or full size, with the options given; a shorter run scales its warm-up."""
    size = QUICK if args.quick else FULL
    changes: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "minutes",
            "connections",
            "rooms",
            "redis_cut_every",
            "redis_cut_seconds",
            "leave_every",
            "reconnect_every",
        )
        if getattr(args, name) is not None
    }
    if args.ask_every is not None:
        changes["ask_every"] = tuple(args.ask_every)
    size = replace(size, **changes)
    size = replace(size, warmup=min(size.warmup, size.minutes * 60 / 5))
    if args.warmup is not None:
        size = replace(size, warmup=args.warmup)
    if args.sample_every is not None:
        size = replace(size, sample_every=args.sample_every)
    return replace(size, ramp=min(size.ramp, size.minutes * 60 / 5))


def plan_jobs(
    size: SoakSize, ports: list[int], processes: int, run_id: str, seed: int
) -> tuple[list[str], list[SoakJob], Timeline]:
    """Rooms dealt to the client processes (a room's members all in one process), members
    dealt to rooms and alternately to the two workers, joining over the ramp."""
    rng = random.Random(seed)
    rooms = [f"soak-{run_id}-{index}" for index in range(size.rooms)]
    minutes = size.minutes * 60
    timeline = Timeline(ask_from=size.ramp / 2, ask_until=minutes, stop_by=minutes + size.drain)
    slots = [
        Slot(
            name=f"m{index}",
            room=rooms[index % len(rooms)],
            worker=(index // len(rooms)) % 2,
            join_at=rng.uniform(0, size.ramp),
        )
        for index in range(size.connections)
    ]
    jobs = []
    for process, part in enumerate(split(rooms, processes)):
        mine = set(part)
        jobs.append(
            SoakJob(
                process=process,
                ports=ports,
                slots=[slot for slot in slots if slot.room in mine],
                size=size,
                timeline=timeline,
                answers=Answers(),
                seed=seed + process,
            )
        )
    return rooms, jobs, timeline


class Watch:
    """The orchestrator's loop while the clients run: progress, cuts, samples."""

    def __init__(
        self, cluster: SoakCluster, size: SoakSize, timeline: Timeline, rooms: list[str]
    ) -> None:
        self.cluster = cluster
        self.size = size
        self.timeline = timeline
        self.rooms = rooms
        db = int(cluster.redis.url.rsplit("/", 1)[-1] or 0)
        self.redis = redis.Redis(host="127.0.0.1", port=cluster.redis.port, db=db)
        self.samples: list[dict[str, Any]] = []
        self.progress: dict[int, dict[str, Any]] = {}
        every, length = size.redis_cut_every, size.redis_cut_seconds
        self.cut_starts = (
            [k * every for k in range(1, int(timeline.ask_until // every) + 1)] if every else []
        )
        self.cut_starts = [t for t in self.cut_starts if t + length + 30 < timeline.ask_until]
        self.t0 = 0.0

    def now(self) -> float:
        return time.time() - self.t0

    def run(self, futures: list[Future[SoakJobResult]], reports: Any, bar: tqdm) -> None:
        self.t0 = time.time()
        next_sample = 0.0
        cut_until: float | None = None
        while not all(future.done() for future in futures):
            now = self.now()
            self._read(reports)
            if cut_until is None and self.cut_starts and now >= self.cut_starts[0]:
                self.cut_starts.pop(0)
                self.cluster.cut_redis(now)
                cut_until = now + self.size.redis_cut_seconds
            elif cut_until is not None and now >= cut_until:
                self.cluster.restore_redis(now)
                cut_until = None
            if now >= next_sample:
                self.samples.append(self.sample(now))
                next_sample += self.size.sample_every
            if int(now) > bar.n:
                bar.n = min(bar.total, int(now))
                bar.set_postfix_str(self._postfix(), refresh=False)
                bar.refresh()
            time.sleep(0.25)
        if cut_until is not None:
            self.cluster.restore_redis(self.now())
        self._read(reports)

    def _read(self, reports: Any) -> None:
        while True:
            try:
                got = reports.get_nowait()
            except queue.Empty:
                return
            self.progress[got["process"]] = got

    def _postfix(self) -> str:
        states: Counter[str] = Counter()
        for got in self.progress.values():
            states.update(got["states"])
        ended = sum(got["answers_ended"] for got in self.progress.values())
        bad = sum(got["violations"] for got in self.progress.values())
        rss = self.samples[-1]["worker-0"]["rss_mib"] if self.samples else 0
        cut = " REDIS CUT" if self.cluster.redis_cut else ""
        return (
            f"connected {states['connected']}, away {states['away']}, answers {ended}, "
            f"violations {bad}, rss0 {rss:.0f} MiB{cut}"
        )

    def sample(self, now: float) -> dict[str, Any]:
        sample: dict[str, Any] = {"t": now, "redis_cut": self.cluster.redis_cut}
        for index, worker in enumerate(self.cluster.workers):
            sample[f"worker-{index}"] = resources.worker_sample(worker)
        sample["redis"] = resources.redis_sample(self.redis, self.rooms)
        sample["postgres"] = {
            "connections": resources.postgres_connections(self.cluster.database_url)
        }
        connected = sum(got["states"].get("connected", 0) for got in self.progress.values())
        by_worker: Counter[int] = Counter()
        for got in self.progress.values():
            by_worker.update(got["connected_by_worker"])
        for index in range(len(self.cluster.workers)):
            worker = sample[f"worker-{index}"]
            worker["files_beyond_members"] = worker["open_files"] - by_worker[index]
        sample["redis"]["presence_beyond_members"] = sample["redis"]["presence_entries"] - connected
        sample["clients"] = {
            "connected": connected,
            "connected_by_worker": dict(by_worker),
            "frames": sum(got["frames"] for got in self.progress.values()),
        }
        sample["load_1m"] = load_average()[0]
        return sample


def log_summary(paths: list[Path]) -> dict[str, int]:
    """How often the worker logs say what matters here."""
    patterns = {
        "tracebacks": r"Traceback",
        "ERROR lines": r"\bERROR\b",
        "Redis lost (reader)": r"lost Redis",
        "reconnected to Redis": r"reconnected to Redis",
        "presence not updated": r"Could not update presence",
        "task exceptions never retrieved": r"Task exception was never retrieved",
        "tasks destroyed while pending": r"Task was destroyed but it is pending",
        "exceptions inside the application": r"Exception inside application",
    }
    counts = dict.fromkeys(patterns, 0)
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            for name, pattern in patterns.items():
                if re.search(pattern, line):
                    counts[name] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = sized(args)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    raise_open_files_limit()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="roomchat-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "code": code_version(),
        "load_before": load_average(),
        "size": asdict(size),
        "seed": seed,
        "tolerance": TOLERANCE,
        "workdir": str(workdir),
    }
    print(f"load average before: {results['load_before']}", file=sys.stderr)
    extra_env = dict(item.split("=", 1) for item in args.server_env)
    with soak_cluster(workdir, log_retention=size.log_retention, extra_env=extra_env) as cluster:
        rooms, jobs, timeline = plan_jobs(
            size, cluster.ports, args.client_processes, secrets.token_hex(3), seed
        )
        watch = Watch(cluster, size, timeline, rooms)
        with ClientPool(len(jobs)) as pool:
            reports = pool.queue()
            barrier = pool.barrier(1)
            futures = [pool.submit(soak_job, job, barrier, reports) for job in jobs]
            barrier.gather(0, len(jobs), futures, timeout=120)
            barrier.release(0)
            total = int(timeline.stop_by + 60)
            with tqdm(total=total, unit="s", dynamic_ncols=True, file=sys.stderr) as bar:
                watch.run(futures, reports, bar)
            outcomes = [future.result() for future in futures]
        time.sleep(5)  # the workers notice the last closes
        after_close = watch.sample(watch.now())
        merged = verify.merge(outcomes)
        tally = merged["tally"]
        verify.check_redis(tally, watch.redis, merged["rooms"])
        rows = verify.answer_rows(cluster.database_url, rooms)
        db = verify.check_database(tally, merged["rooms"], rows)
        logs = log_summary([worker.log for worker in cluster.workers])
        cuts = [asdict(cut) for cut in cluster.cuts]
    results["load_after"] = load_average()
    results.update(summarize(size, timeline, watch, outcomes, merged, db))
    results.update(after_close=after_close, worker_logs=logs, cuts=cuts)
    text = report.markdown(results)
    print(text)
    report.write(results, text, args.out)
    print(f"logs: {workdir}", file=sys.stderr)
    return 1 if results["violations"] or results["failures"] else 0


def summarize(
    size: SoakSize,
    timeline: Timeline,
    watch: Watch,
    outcomes: list[SoakJobResult],
    merged: dict[str, Any],
    db: dict[str, Any],
) -> dict[str, Any]:
    tally, rooms = merged["tally"], merged["rooms"]
    answers = [seen for room in rooms.values() for seen in room["answers"].values()]
    not_posted = [record for outcome in outcomes for record in outcome.asks_not_posted]
    sent = sum(outcome.asks for outcome in outcomes)
    return {
        "violations": tally.total,
        "tally": {"counts": dict(tally.counts), "examples": tally.examples},
        "counters": dict(merged["counters"]),
        "checks": {
            "events": sum(room["events"] for room in rooms.values()),
            "checked_full": sum(seen["checked_full"] for seen in answers),
            "checked_from_history": sum(seen["checked_from_history"] for seen in answers),
            "db": db,
        },
        "asks": {
            "sent": sent,
            "posted": sent - len(not_posted),
            "refused": sum(1 for record in not_posted if record.state == "refused"),
            "unconfirmed": sum(1 for record in not_posted if record.state != "refused"),
            "not_posted": [asdict(record) for record in not_posted[:50]],
        },
        "connected_at_end": sum(outcome.connected_at_end for outcome in outcomes),
        "absent_at_end": [m for outcome in outcomes for m in outcome.absent_at_end][:50],
        "failures": [f for outcome in outcomes for f in outcome.failures],
        "client_cpu_s": sum(outcome.cpu_seconds for outcome in outcomes),
        "samples": watch.samples,
        **resources.verdict(
            watch.samples, after=size.warmup, until=timeline.ask_until, tolerance=TOLERANCE
        ),
    }
