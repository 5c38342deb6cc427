"""Real WebSocket clients (`websockets`) of a cluster, with the protocol's bookkeeping: each
`Member` keeps every room event it received, so tests compare what members saw."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import psycopg
import websockets
from websockets.asyncio.client import ClientConnection

Frame = dict[str, Any]

# Every client a test opened, so that the cluster conftest closes what a test left open, in the
# test's own event loop. (A socket left to the garbage collector warns in whichever later test
# the collector happens to run: one outage test failed CI that way on its predecessor's socket.)
OPEN_CLIENTS: set[ClientConnection] = set()


async def close_open_clients() -> None:
    clients = list(OPEN_CLIENTS)
    OPEN_CLIENTS.clear()
    for ws in clients:
        try:
            async with asyncio.timeout(2):
                await ws.close()
        except (TimeoutError, OSError):
            pass
        ws.transport.abort()  # closed or not, the socket goes now


class Member:
    """One socket in a room. `events` holds the room events (frames with a `seq`) in order."""

    def __init__(self, ws: ClientConnection, welcome: Frame) -> None:
        self.ws = ws
        self.welcome = welcome
        self.events: list[Frame] = []
        self.others: list[Frame] = []  # presence, pong, error

    @classmethod
    async def join(
        cls, url: str, *, cookie: str | None = None, timeout: float = 30, **options: Any
    ) -> Member:
        headers = {"Cookie": cookie} if cookie else None
        if cookie and "origin" not in options:
            # A session cookie goes with the site's own origin, as a browser sends it.
            scheme, rest = url.split("://", 1)
            options["origin"] = f"{'https' if scheme == 'wss' else 'http'}://{rest.split('/')[0]}"
        ws = await websockets.connect(
            url,
            additional_headers=headers,
            open_timeout=timeout,
            max_size=2**24,
            proxy=None,
            **options,
        )
        OPEN_CLIENTS.add(ws)
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "welcome":
                    return cls(ws, frame)

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else self.welcome["seq"]

    async def recv(self, timeout: float = 30) -> Frame:
        async with asyncio.timeout(timeout):
            frame: Frame = json.loads(await self.ws.recv())
        if frame["type"] == "welcome":
            self.welcome = frame
        elif "seq" in frame:
            self.events.append(frame)
        else:
            self.others.append(frame)
        return frame

    async def until(self, predicate: Callable[[Frame], bool], timeout: float = 30) -> list[Frame]:
        """Frames received up to and including the first that matches `predicate`."""
        frames = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                frames.append(frame)
                if predicate(frame):
                    return frames

    async def until_end(self, answer_id: str | None = None, timeout: float = 60) -> Frame:
        frames = await self.until(
            lambda f: f["type"] == "answer.end" and answer_id in (None, f["answer_id"]), timeout
        )
        return frames[-1]

    async def closed(self, timeout: float = 60) -> int | None:
        """Read until the server closes the socket: its close code (None if it sent none)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        except websockets.ConnectionClosed as err:
            return err.rcvd.code if err.rcvd is not None else None

    async def ask(self, text: str, **extra: Any) -> None:
        await self.ws.send(json.dumps({"type": "ask", "text": text, **extra}))

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()


async def join_unread(url: str, *, receive_buffer: int = 4096) -> ClientConnection:
    """A client that will not read: a tiny kernel receive buffer, and `websockets` stops
    reading from the socket as soon as one message waits unread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    # A network-sized segment (loopback's is 64 KiB): Linux sizes the server's initial send
    # buffer from it (about 2 x 10 segments), so here it holds tens of KiB, as over a real
    # network, instead of the 4 MiB loopback gets; the bound is then reached in a test.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    host, port = url.split("/")[2].split(":")
    sock.connect((host, int(port)))
    sock.setblocking(False)
    ws = await websockets.connect(
        url, sock=sock, max_queue=1, compression=None, max_size=2**24, proxy=None
    )
    OPEN_CLIENTS.add(ws)
    return ws


def deltas(frames: list[Frame], answer_id: str) -> str:
    return "".join(
        f["text"] for f in frames if f["type"] == "answer.delta" and f["answer_id"] == answer_id
    )


def assert_consecutive(frames: list[Frame], start: int) -> None:
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(start, start + len(seqs))), seqs


def stored_message(database_url: str, message_id: str) -> dict[str, Any]:
    """The message as PostgreSQL has it (what every worker stored)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select status, text, error from chat_message where id = %s", (message_id,)
        ).fetchone()
    assert row is not None, f"{message_id} is not stored"
    return {"status": row[0], "text": row[1], "error": row[2]}
