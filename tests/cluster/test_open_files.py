"""What a worker holds after a crowd leaves (the hardening issue's soak left "open files after
everyone left" unexplained): every member's socket is closed, and what stays open is the Redis
connection pools, which are bounded (the channel layer's 200, the room log's 64, the
coordinator's 32, settings and chat/realtime), however many crowds come and go. (Measured here:
12 files before, 160 after one crowd of 150, 296 after a second: the pools grow to what the
bursts need, up to their caps, and keep their idle connections.)"""

from __future__ import annotations

import asyncio
import os

import pytest

from bench.soak.resources import open_files
from tests.cluster.clients import Member
from tests.cluster.conftest import ClusterFactory

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

CROWD = 150
# The Redis pools' caps (config/settings.py CHANNEL_LAYERS, chat/realtime/redis_log.py and
# redis_coordination.py), plus the PostgreSQL connection and the worker's own files.
POOLS = 200 + 64 + 32


def member_sockets(port: int) -> int:
    """Established TCP connections to the worker's port (its members), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


async def _crowd(url: str) -> None:
    members: list[Member] = []
    for start in range(0, CROWD, 50):
        members += await asyncio.gather(*(Member.join(url) for _ in range(start, start + 50)))
    await asyncio.gather(*(member.close() for member in members))


async def _settled(port: int, seconds: float = 10.0) -> int:
    """Wait until no member's socket is left on the worker (or the time is up)."""
    for _ in range(int(seconds * 10)):
        left = member_sockets(port)
        if left == 0:
            return 0
        await asyncio.sleep(0.1)
    return member_sockets(port)


async def test_after_a_crowd_leaves_only_the_bounded_pools_stay_open(
    make_cluster: ClusterFactory, room: str
) -> None:
    cluster = make_cluster(workers=1)
    worker = cluster.workers[0]
    before, _ = open_files(worker.pid)
    await _crowd(cluster.ws_url(0, room))
    assert await _settled(worker.port) == 0
    first, _ = open_files(worker.pid)
    assert first <= before + POOLS
    await _crowd(cluster.ws_url(0, room))
    assert await _settled(worker.port) == 0
    second, _ = open_files(worker.pid)
    print(f"open files: {before} before, {first} after a crowd, {second} after another")
    assert second <= before + POOLS
