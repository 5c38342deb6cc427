"""A Redis of our own: a throwaway `redis-server` on a free port (no persistence), or a reachable
one. The multi-worker tests (tests/cluster/harness.py) and the soak (bench/soak) start theirs
here; it needs nothing but the standard library and the `redis-server`/`redis-cli` programs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.procs import free_port, reachable


def _wait(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class RedisServer:
    """A Redis for the tests and the soak: a throwaway `redis-server` we started, or a reachable
    one."""

    url: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    @property
    def throwaway(self) -> bool:
        return self.process is not None

    def ping(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, timeout=5
        )
        return result.stdout.strip() == b"PONG"

    def _start(self) -> None:
        assert self.workdir is not None
        # No persistence: a restart loses everything, which is what the restart test wants.
        # Not --daemonize: that exits 0 even when the port is taken; we wait for a PONG.
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait(
            lambda: self.process is not None and self.process.poll() is None and self.ping(),
            f"redis-server on port {self.port}",
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        """Kill the throwaway Redis (losing all its data) and start it again on its port."""
        if not self.throwaway:
            raise RuntimeError("only a throwaway Redis started by the tests may be restarted")
        self.stop()
        self._start()


@contextmanager
def redis_server(*, throwaway: bool = True) -> Iterator[RedisServer]:
    """A throwaway `redis-server` on a free port (the default, whenever the binary exists, so
    tests never share keys with anything else); else REDIS_URL or 127.0.0.1:6379 with a
    database number of its own."""
    if throwaway and shutil.which("redis-server"):
        workdir = Path(tempfile.mkdtemp(prefix="roomchat-redis-"))
        port = free_port()
        server = RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port, workdir=workdir)
        server._start()
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        return
    url = os.environ.get("REDIS_URL", "")
    if not url and reachable("127.0.0.1", 6379):
        url = f"redis://127.0.0.1:6379/{uuid.uuid4().int % 15 + 1}"
    if not url:
        raise RuntimeError("no Redis: install redis-server or set REDIS_URL")
    yield RedisServer(url=url, port=int(url.split(":")[2].split("/")[0]))
