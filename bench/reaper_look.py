"""The orphan reaper's look at a worker's rooms on the Redis room log, timed both ways in one run.

Twice a second (`chat.runtime.REAP_SECONDS`) every worker asks the room log which answers are
still being written in each room it serves, to end those whose worker died. Asked room by room,
that was one Redis round trip (a MULTI pipeline) per room; `RedisRoomLog.live_answers_in` asks
for all of them in one pipeline per `LIVE_BATCH` rooms. This prints the wall and CPU time of
one look both ways, side by side, for each number of rooms:

    python -m bench.reaper_look [--rooms 200,1000] [--looks 20] [--redis-url URL]

The Redis database given (default: a throwaway `redis-server` of its own, as the tests use) is
flushed at the end. Prints `os.getloadavg()` before and after: the timings mean little on a
busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator


async def _seed_nothing(room: str) -> object:
    from chat.realtime.log import RoomSeed

    return RoomSeed(last_seq=0)


async def look_both_ways(url: str, rooms: int, looks: int) -> dict[str, tuple[float, float]]:
    """(wall ms, CPU ms) of one look at `rooms` rooms, room by room and together; the rooms
    each hold a question and one answer still being written."""
    from chat import protocol
    from chat.realtime.redis_log import RedisRoomLog

    log = RedisRoomLog(
        url, seeder=_seed_nothing, retention_events=100, retention_seconds=60, view_size=10
    )
    names = [f"reaper-look-{rooms}-{n}" for n in range(rooms)]
    user = {"id": "g:1", "name": "A"}
    try:
        for room in names:
            question = protocol.question_event(
                id=f"q-{room}", user=user, text="?", created="t", client_id=None
            )
            await log.append(room, question)
            await log.append(
                room,
                protocol.answer_start_event(id=f"a-{room}", question_id=f"q-{room}", created="t"),
            )

        async def room_by_room() -> dict[str, list[str]]:
            return {room: await log.live_answers(room) for room in names}

        async def together() -> dict[str, list[str]]:
            return await log.live_answers_in(names)

        if await room_by_room() != await together():
            raise AssertionError("the two looks disagree")
        ways: dict[str, Callable[[], Awaitable[dict[str, list[str]]]]] = {
            "room by room": room_by_room,
            "together": together,
        }
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(2):  # interleaved
            for name, look in ways.items():
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(looks):
                    await look()
                timings[name].append(
                    (
                        (time.perf_counter() - wall) / looks * 1000,
                        (time.process_time() - cpu) / looks * 1000,
                    )
                )
        return {name: min(runs) for name, runs in timings.items()}
    finally:
        await log._redis.flushdb()
        await log.close()


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from bench.redis_server import redis_server

    with redis_server() as server:
        yield server.url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reaper_look")
    parser.add_argument("--rooms", default="200,1000", help="rooms per look (200,1000)")
    parser.add_argument("--looks", type=int, default=20, help="looks timed per way and round")
    parser.add_argument("--redis-url", default="", help="a Redis database to use (flushed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Only the room log is used: no database, no secrets of a real deployment.
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
    os.environ.setdefault("DJANGO_READ_DOT_ENV", "0")
    import logging

    import django

    django.setup()
    logging.getLogger("chat.realtime.redis_log").setLevel(logging.WARNING)
    print(f"load average before: {os.getloadavg()}", flush=True)
    print("| rooms | way | wall ms / look | CPU ms / look |")
    print("|---|---|---|---|")
    with _redis(args.redis_url or None) as url:
        for rooms in (int(n) for n in args.rooms.split(",")):
            found = asyncio.run(look_both_ways(url, rooms, args.looks))
            for way, (wall, cpu) in found.items():
                print(f"| {rooms} | {way} | {wall:.2f} | {cpu:.2f} |", flush=True)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
