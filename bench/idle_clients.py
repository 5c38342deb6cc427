"""Client job of the idle benchmark: open many WebSockets that then only wait; prove at the end
that each is still served (a ping answered by a pong) and close them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets

from bench.pool import Barrier, run_async
from bench.procstat import own_cpu_seconds


@dataclass(slots=True)
class IdleJob:
    """`warm` sockets first (step 0), then `urls` (step 1), then ping all (step 2)."""

    warm: list[str]
    urls: list[str]
    concurrency: int = 32
    ping_timeout: float = 60.0


@dataclass(slots=True)
class IdleJobResult:
    connected: int
    failed: int
    alive: int
    connect_seconds: float
    cpu_seconds: float
    errors: list[str] = field(default_factory=list)


class _Socket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pong = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.ws:
                if '"pong"' in message:
                    self.pong.set()


def idle_job(job: IdleJob, barrier: Barrier) -> IdleJobResult:
    return run_async(_idle_job(job, barrier))


async def _idle_job(job: IdleJob, barrier: Barrier) -> IdleJobResult:
    cpu_before = own_cpu_seconds()
    sockets: list[_Socket] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(job.concurrency)

    async def open_one(url: str) -> None:
        async with gate:
            try:
                ws = await websockets.connect(
                    url, ping_interval=None, compression=None, open_timeout=120
                )
                while json.loads(await ws.recv()).get("type") != "welcome":
                    pass
                sockets.append(_Socket(ws))
            except Exception as err:
                errors.append(repr(err))

    await asyncio.gather(*(open_one(url) for url in job.warm))
    await barrier.arrive(0, len(sockets))
    started = time.monotonic()
    await asyncio.gather(*(open_one(url) for url in job.urls))
    connect_seconds = time.monotonic() - started
    await barrier.arrive(1, len(sockets))
    alive = await _ping_all(sockets, job.ping_timeout)
    await barrier.arrive(2, alive)
    await asyncio.gather(*(_close(sock) for sock in sockets))
    return IdleJobResult(
        connected=len(sockets),
        failed=len(errors),
        alive=alive,
        connect_seconds=connect_seconds,
        cpu_seconds=own_cpu_seconds() - cpu_before,
        errors=errors[:5],
    )


async def _ping_all(sockets: list[_Socket], timeout: float) -> int:
    for sock in sockets:
        with contextlib.suppress(websockets.ConnectionClosed):
            await sock.ws.send('{"type":"ping"}')
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(sock.pong.wait() for sock in sockets))
    except TimeoutError:
        pass
    return sum(1 for sock in sockets if sock.pong.is_set())


async def _close(sock: _Socket) -> None:
    # The measurement is over: a socket that fails to close cleanly changes nothing.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sock.ws.close(), 10)
    sock.reader.cancel()
