"""A small TCP proxy for outages: put it in front of a server (PostgreSQL, Redis), then `cut()`
it, which closes every connection through it and refuses (or holds) new ones, and `restore()`
it. It runs its own event loop in a thread, so the caller's event loop, or a blocking call in
the caller, never stalls the traffic it carries. The outage tests (tests/cluster) and the soak
(bench/soak) use it; like bench/procs.py it lives here because the benchmarks never import the
tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from bench.procs import free_port

T = TypeVar("T")
Mode = Literal["open", "refuse", "hold"]

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`.

    Modes: `open` forwards; `refuse` accepts a new connection and closes it at once (the client
    sees the server hang up, as when a database host is restarting); `hold` accepts it and
    forwards nothing until `restore()` (a black hole: the client waits)."""

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.accepted = 0
        self._mode: Mode = "open"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp proxy")
        self._server: asyncio.Server | None = None
        self._open = asyncio.Event()
        # Every writer of a live connection (both sides), so that a cut can close them all.
        self._writers: set[asyncio.StreamWriter] = set()
        # The connections' tasks, so that stopping waits for them to end.
        self._handlers: set[asyncio.Task[Any]] = set()
        self._drop_reply = threading.Event()
        self._dropped = 0

    # --- control, from any thread -------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def cut(self, mode: Literal["refuse", "hold"] = "refuse") -> None:
        """Close every connection through the proxy; new ones are refused or held."""
        self._call(self._cut(mode))

    def restore(self) -> None:
        """Forward again (held connections go through now)."""
        self._call(self._restore())

    def drop_next_reply(self) -> None:
        """The next bytes the server sends back are dropped, and that connection is broken:
        the request reached the server and ran, the client never hears of it (and retries)."""
        self._drop_reply.set()

    @property
    def replies_dropped(self) -> int:
        return self._dropped

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # --- in the proxy's loop ----------------------------------------------------------------

    async def _start(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        # From now on whatever is accepted (clients keep reconnecting) is hung up on at once.
        self._mode = "refuse"
        if self._server is not None:
            self._server.close()
        self._close_all()
        # Not cancelled (asyncio's stream server logs a cancelled handler as an error): with
        # their connections closed, and held ones let go, every handler returns by itself.
        self._open.set()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        self._close_all()  # what a handler still stuck there holds
        if self._server is not None:
            await self._server.wait_closed()
        # What was still under way (an accept that raced the server's close) ends here, in
        # this loop: a transport left to the garbage collector warns in some later test.
        await self._drain()

    async def _drain(self) -> None:
        """Let every task of this loop end (refused connections hang up at once), then close
        whatever is still open."""
        for _ in range(3):
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=2)
            self._close_all()
            await asyncio.sleep(0)  # the aborted transports close their sockets here

    async def _cut(self, mode: Literal["refuse", "hold"]) -> None:
        self._mode = mode
        self._open.clear()
        self._close_all()

    async def _restore(self) -> None:
        self._mode = "open"
        self._open.set()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            # abort(): at once, without flushing what is buffered (the line went dead).
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._mode == "refuse":
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._open.wait()  # held while cut in `hold` mode
            if writer not in self._writers:
                return  # cut again while it was held
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:  # the server itself is down: hang up on the client too
            self._writers.discard(writer)
            writer.transport.abort()
            return
        try:
            if writer not in self._writers:
                return  # cut while the upstream connection was being made
            self._writers.add(upstream_writer)
            await asyncio.gather(
                self._pipe(reader, upstream_writer),
                self._pipe(upstream_reader, writer, replies=True),
            )
        finally:
            # Whatever ended the forwarding, both sides close (never left to the collector).
            for side in (writer, upstream_writer):
                self._writers.discard(side)
                side.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool = False
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(CHUNK):
                if writer.transport.is_closing():
                    return
                if replies and self._drop_reply.is_set():
                    self._drop_reply.clear()
                    self._dropped += 1
                    break  # the reply is lost with the connection
                writer.write(data)
                await writer.drain()
        # One side hung up (or was cut): end the other side too.
        writer.transport.abort()
