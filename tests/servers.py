"""Real server processes for tests: daphne running `config.asgi:application`. Ports and
stopping processes: `bench.procs` (free_port, wait_for_port, stop_process), shared with the
benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bench.procs import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def server_env(tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "OPENAI_"))}
    env.update(
        {
            "DJANGO_SECRET_KEY": "test-server-secret",
            "DJANGO_READ_DOT_ENV": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "CHROMA_PATH": os.environ.get("CHROMA_PATH", str(tmp / "chroma")),
            "PYTHONUNBUFFERED": "1",
            # As the project's run commands serve (chat.reclaim).
            "PYTHONMALLOC": "malloc",
        }
    )
    env.pop("REDIS_URL", None)
    env.update(extra or {})
    return env


def migrate(env: Mapping[str, str]) -> None:
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=dict(env),
        check=True,
    )


@contextmanager
def daphne(
    env: Mapping[str, str], port: int | None = None, log: Path | None = None
) -> Iterator[str]:
    """A daphne process serving the project; yields its base URL (http://127.0.0.1:PORT)."""
    port = port or free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            str(BIN / "daphne"),
            "--websocket_connect_timeout",
            "30",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ],
        cwd=ROOT,
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, name="daphne", log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        if log:
            out.close()  # type: ignore[union-attr]
