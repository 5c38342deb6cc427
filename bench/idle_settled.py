"""What an idle worker costs once a crowd has settled: one daphne worker on the Redis room log,
members connected and left idle, its CPU read over a window well after the last connect.

The idle benchmark (`bench.run --only idle`) reads its window right after the connects, when the
worker's paced full collection over the new objects falls in it; this reads the steady state.

    python -m bench.idle_settled [--rooms 1000] [--per-room 5] [--settle 15] [--window 10]
                                 [--redis-url URL] [--profile RAW]

`--profile RAW`: py-spy's raw stacks of the worker over one more window (needs py-spy). Uses a
SQLite database of its own in a temp directory and the Redis database given (default: a
throwaway `redis-server`). Prints `os.getloadavg()` before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.procs import BIN, manage, server_env, start_daphne
from bench.procstat import cpu_seconds, raise_open_files_limit


async def _connect(port: int, rooms: int, per_room: int) -> list[Any]:
    import websockets

    gate = asyncio.Semaphore(50)
    sockets: list[Any] = []

    async def one(n: int) -> None:
        async with gate:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/ws/rooms/idle-{n % rooms}/",
                origin=f"http://127.0.0.1:{port}",
                max_size=None,
            )
            await ws.recv()  # the welcome
            sockets.append(ws)

    await asyncio.gather(*(one(n) for n in range(rooms * per_room)))
    return sockets


async def _drain(ws: Any) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def measure(
    redis_url: str, *, rooms: int, per_room: int, settle: float, window: float, profile: str
) -> dict[str, float]:
    """Idle CPU (ms per second) of the worker over `window` seconds, `settle` seconds after
    the last of `rooms` x `per_room` members connected."""
    work = Path(tempfile.mkdtemp(prefix="roomchat-idle-settled-"))
    env = server_env(
        work,
        llm_base_url="http://127.0.0.1:9/v1",  # nothing is asked
        database_url=f"sqlite:///{work / 'db.sqlite3'}",
        chroma_path=work / "chroma",
        collection="nothing",
        redis_url=redis_url,
    )
    manage(env, "migrate", "--no-input", "-v", "0")
    found: dict[str, float] = {}
    with ExitStack() as stack:
        worker = stack.enter_context(start_daphne(work, env, name="worker"))
        sockets = await _connect(worker.port, rooms, per_room)
        readers = [asyncio.create_task(_drain(ws)) for ws in sockets]
        await asyncio.sleep(settle)
        cpu, began = cpu_seconds(worker.popen.pid), time.monotonic()
        await asyncio.sleep(window)
        found["idle_cpu_ms_per_s"] = (
            (cpu_seconds(worker.popen.pid) - cpu) / (time.monotonic() - began) * 1000
        )
        if profile:
            spy = [str(BIN / "py-spy"), "record", "-p", str(worker.popen.pid)]
            spy += ["-d", str(max(1, round(window))), "-r", "100", "-f", "raw", "-o", profile]
            await asyncio.to_thread(subprocess.run, spy, capture_output=True)
        await asyncio.gather(*(ws.close() for ws in sockets))
        for reader in readers:
            reader.cancel()
    found["members"] = float(len(sockets))
    return found


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from bench.redis_server import redis_server

    with redis_server() as server:
        yield server.url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_settled")
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--per-room", type=int, default=5)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after the connects")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--redis-url", default="", help="a Redis database to use")
    parser.add_argument("--profile", default="", help="py-spy's raw stacks into this file")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with _redis(args.redis_url or None) as url:
        found = asyncio.run(
            measure(
                url,
                rooms=args.rooms,
                per_room=args.per_room,
                settle=args.settle,
                window=args.window,
                profile=args.profile,
            )
        )
    print(
        f"{int(found['members'])} members in {args.rooms} rooms, the Redis log: "
        f"idle CPU {found['idle_cpu_ms_per_s']:.1f} ms/s",
        flush=True,
    )
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
