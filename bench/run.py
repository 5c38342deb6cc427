"""Benchmarks: what the chat server adds to a stream, side by side with its baselines.

    .venv/bin/python -m bench.run [--quick] [--only NAME ...] [--repeat N] [--out PATH ...]

NAME is one of latency, cpu, ttfd, burst, fanout, idle, storm (default: all). `--out` takes a
`.json` file (every run and the summary) or a `.md` file (docs/benchmarks.md: its results
section between the `<!-- results -->` markers is replaced). See docs/benchmarks.md for what
each measures.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import compare, report
from bench.benchmarks import burst, fanout, idle, latency, storm, ttfd
from bench.harness import Context
from bench.pool import ClientPool
from bench.procs import ROOT, start_simulator
from bench.procstat import load_average, machine, raise_open_files_limit
from bench.sizes import FULL, QUICK, Sizes, StreamSize

NAMES = ("latency", "cpu", "ttfd", "burst", "fanout", "idle", "storm")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test's)")
    parser.add_argument(
        "--only", action="append", choices=NAMES, metavar="NAME", help=", ".join(NAMES)
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="interleaved repeats (3; quick: 1)"
    )
    parser.add_argument("--out", action="append", type=Path, default=[], help=".json or .md")
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OLD.json",
        help="print each figure old → new and whether it got better or worse",
    )
    parser.add_argument("--client-processes", type=int, default=2, help="client processes (2)")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and databases (temp)")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/7",
        help="Redis of the fan-out's two workers (a database of its own: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy during its first run at the cpu level, and worker B "
        "during the first reconnect storm",
    )
    parser.add_argument(
        "--fanout-settle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="experiments: wait between the members' joins and the ask (5; quick 0.2)",
    )
    parser.add_argument(
        "--idle-room-size",
        type=int,
        default=None,
        metavar="N",
        help="idle: members per room (25; 5 puts 5,000 connections in 1,000 rooms)",
    )
    parser.add_argument(
        "--storm-members",
        type=int,
        default=None,
        metavar="N",
        help="storm: members (5,000; quick 20), dealt over --storm-rooms rooms (200; quick 4)",
    )
    parser.add_argument("--storm-rooms", type=int, default=None, metavar="N", help="storm: rooms")
    parser.add_argument(
        "--burst-levels",
        default=None,
        metavar="N,N,...",
        help="burst: questions asked at once (1,10,50; quick 1,4)",
    )
    parser.add_argument(
        "--burst-rounds", type=int, default=None, metavar="N", help="burst: bursts per N (5)"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="experiments: extra environment of every chat server",
    )
    parser.add_argument(
        "--db-options",
        default="",
        metavar="QUERY",
        help="experiments: query options of the servers' DATABASE_URL, e.g. conn_max_age=600",
    )
    return parser.parse_args(argv)


def stream_levels(names: list[str], sizes: Sizes) -> list[StreamSize]:
    """The stream runs latency and cpu need, each once even when both ask for it."""
    levels: list[StreamSize] = []
    for name, wanted in (("latency", sizes.latency), ("cpu", sizes.cpu)):
        if name in names:
            levels.extend(size for size in wanted if size not in levels)
    return sorted(levels, key=lambda size: size.answers)


def plan(names: list[str], ctx: Context) -> list[tuple[str, int, Callable[[], dict[str, Any]]]]:
    """(name, progress steps, run) for each benchmark to run, in order."""
    steps: list[tuple[str, int, Callable[[], dict[str, Any]]]] = []
    levels = stream_levels(names, ctx.sizes)
    if levels:
        steps.append(("latency", latency.steps(ctx, levels), lambda: latency.run(ctx, levels)))
    if "ttfd" in names:
        steps.append(("ttfd", ttfd.steps(ctx), lambda: ttfd.run(ctx)))
    if "burst" in names:
        steps.append(("burst", burst.steps(ctx), lambda: burst.run(ctx)))
    if "fanout" in names:
        steps.append(("fanout", fanout.steps(ctx), lambda: fanout.run(ctx)))
    if "idle" in names:
        steps.append(("idle", idle.steps(ctx), lambda: idle.run(ctx)))
    if "storm" in names:
        steps.append(("storm", storm.steps(ctx), lambda: storm.run(ctx)))
    return steps


def code_version() -> str:
    """The commit measured, and how many files differ from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
    except OSError:
        return "unknown"
    changed = len(status.splitlines())
    return f"{head} + {changed} changed/untracked files" if changed else head


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.fanout_settle is not None:
        sizes = replace(sizes, fanout_settle=args.fanout_settle)
    if args.idle_room_size is not None:
        sizes = replace(sizes, idle_room_size=args.idle_room_size)
    if args.storm_members is not None:
        sizes = replace(sizes, storm_members=args.storm_members)
    if args.storm_rooms is not None:
        sizes = replace(sizes, storm_rooms=args.storm_rooms)
    if args.burst_levels is not None:
        levels = tuple(int(n) for n in args.burst_levels.split(","))
        sizes = replace(sizes, burst_levels=levels)
    if args.burst_rounds is not None:
        sizes = replace(sizes, burst_rounds=args.burst_rounds)
    repeat = args.repeat or (1 if args.quick else 3)
    names = list(dict.fromkeys(args.only or NAMES))
    raise_open_files_limit()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="roomchat-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "code": code_version(),
        "load_before": load_average(),
        "quick": args.quick,
        "repeat": repeat,
        "benchmarks": names,
        "sizes": asdict(sizes),
        "workdir": str(workdir),
        "server_env": args.server_env,
        "db_options": args.db_options,
        "runs": [],
        "skipped": [],
        "errors": [],
    }
    with (
        ClientPool(args.client_processes) as pool,
        start_simulator(
            workdir, tps=sizes.tps, first_token_delay=sizes.first_token_delay
        ) as simulator,
        tqdm(total=1, unit="run", dynamic_ncols=True, file=sys.stderr) as bar,
    ):
        ctx = Context(
            workdir=workdir,
            pool=pool,
            simulator=simulator,
            sizes=sizes,
            repeat=repeat,
            progress=bar,
            run_id=secrets.token_hex(3),
            server_env=dict(item.split("=", 1) for item in args.server_env),
            db_options=args.db_options,
            redis_url=args.redis_url,
            profile=args.profile,
        )
        steps = plan(names, ctx)
        bar.total = sum(count for _, count, _ in steps)
        bar.refresh()
        for name, _, run in steps:
            try:
                outcome = run()
            except Exception as err:
                traceback.print_exc()
                results["errors"].append({"bench": name, "error": repr(err)})
                continue
            results["runs"].extend(outcome.get("runs", []))
            results["skipped"].extend(outcome.get("skipped", []))
            for key, value in outcome.items():
                if key not in ("runs", "skipped"):
                    results.setdefault("info", {})[name + "." + key] = value
    results["load_after"] = load_average()
    results["summary"] = report.summarize(results)
    text = report.markdown(results)
    print(text)
    if args.compare is not None:
        print(compare.markdown(json.loads(args.compare.read_text()), results))
    for out in args.out:
        if out.suffix == ".md":
            report.update_doc(out, text)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1, default=str))
    print(f"logs: {workdir}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
