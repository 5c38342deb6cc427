"""Running the simulator: on the current event loop, or in a thread with its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .app import build_app
from .config import SimConfig
from .state import RequestRecord, SimulatorState

_T = TypeVar("_T")

# Hanging requests (stall) end as soon as the server closes; this only bounds the wait.
_SHUTDOWN_TIMEOUT = 2.0


class SimulatorServer:
    """One simulator listening on the current event loop. Tests usually get one from
    `running_simulator()`; the CLI (`python -m llmsim`) starts one directly."""

    def __init__(
        self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = SimulatorState(config or SimConfig())
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The server's root, e.g. `http://127.0.0.1:8001` (admin API under `/_sim/`)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to use as OPENAI_BASE_URL, e.g. `http://127.0.0.1:8001/v1`."""
        return f"{self.url}/v1"

    async def start(self) -> None:
        runner = web.AppRunner(
            build_app(self.state), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = site.port
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is None:
            return
        self.state.closing = True
        runner, self._runner = self._runner, None
        await runner.cleanup()

    def stats(self) -> list[RequestRecord]:
        """A copy of the request records, oldest first."""
        return self.state.snapshot()

    def configure(self, **overrides: Any) -> SimConfig:
        """Change the server defaults (same names as `SimConfig`); returns the new defaults."""
        return self.state.configure(overrides)

    def reset(self) -> None:
        """Back to the starting configuration; forget requests and fault counts."""
        self.state.reset()


@asynccontextmanager
async def running_simulator(
    *, host: str = "127.0.0.1", port: int = 0, **config: Any
) -> AsyncIterator[SimulatorServer]:
    """A simulator on the current event loop for the duration of the block, on an ephemeral port
    by default. `config` takes `SimConfig`'s names: `tokens`, `tps`, `fault`, ..."""
    server = SimulatorServer(SimConfig().updated(config), host=host, port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class SimulatorThread:
    """A simulator in a daemon thread with its own event loop: for synchronous tests, and for
    tests whose chat server runs in another process (it must outlive any one test's loop)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self._server = SimulatorServer(SimConfig().updated(config), host=host, port=port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="llm-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("The LLM simulator did not start in time.")
        if self._startup_error is not None:
            raise RuntimeError("The LLM simulator could not start.") from self._startup_error

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> list[RequestRecord]:
        return self._call(self._server.stats)

    def configure(self, **overrides: Any) -> SimConfig:
        return self._call(lambda: self._server.configure(**overrides))

    def reset(self) -> None:
        self._call(self._server.reset)

    def _call(self, func: Callable[[], _T]) -> _T:
        """Run `func` on the simulator's loop: its state is only touched from that thread."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            # Stopped (or never started): nothing else touches the state any more.
            return func()

        async def call() -> _T:
            return func()

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return future.result(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self._server.start()
        except BaseException as err:
            self._startup_error = err
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._server.stop()
