"""The processes a benchmark drives: the tapped LLM simulator, daphne workers, the baseline relay.

Each runs as its own OS process (so none shares an event loop or a core with the clients), logs
to a file in the run's work directory, and is stopped when the benchmark's `ExitStack` closes.

`free_port`, `free_ports`, `reachable`, `wait_for_port` and `stop_process` are also the tests'
(tests/servers.py, tests/cluster/harness.py, ...): the tests import them from here, this package
never imports the tests. They need nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")

# Limits of the chat raised for load: one guest per connection asks once, but hundreds at once.
LOAD_LIMITS = {
    "CHAT_MAX_ANSWERS_PER_USER": "100000",
    "CHAT_MAX_ANSWERS_PER_ROOM": "100000",
    "CHAT_ASK_RATE_PER_MINUTE": "1000000",
    "CHAT_ASK_BURST": "1000000",
    # Every benchmark client is a guest from 127.0.0.1: the limits for an open server's guests
    # and its running answers are not what is measured.
    "CHAT_MAX_ANSWERS_RUNNING": "100000",
    "CHAT_MAX_ANSWERS_PER_ADDRESS": "100000",
    "CHAT_ADDRESS_ASK_RATE_PER_MINUTE": "1000000",
    "CHAT_ADDRESS_ASK_BURST": "1000000",
    "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    # Idle rooms are forgotten 2 s after their last use (30 s by default): the idle benchmark
    # reads the RSS once that has happened.
    "CHAT_ROOM_STATE_GRACE_SECONDS": "2",
    "CHAT_FRAME_RATE_PER_SECOND": "1000000",
    "CHAT_LLM_READ_TIMEOUT": "120",
    "CHAT_LLM_CONNECT_TIMEOUT": "30",
    "CHAT_LLM_MAX_TOKENS": "100000",
}


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (as of now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct ports of 127.0.0.1 that nothing listens on (as of now), for processes
    started together. Called `count` times, `free_port` may give one port twice (each socket is
    closed before the next is bound); two servers started at once on that port race for it, and
    the loser's clients reach the winner. Here every socket stays bound until all are chosen."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host`:`port` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    process: subprocess.Popen[Any] | None = None,
    timeout: float = 30.0,
    *,
    name: str = "server",
    log: Path | None = None,
) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`. Raises RuntimeError
    if `process` exits first, TimeoutError after `timeout` seconds (naming `log` if given)."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}{see}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{name} did not listen on port {port} in {timeout:g} s{see}")


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a process we started: SIGTERM, up to `timeout` seconds to exit, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Proc:
    """A started process, listening on `port` of 127.0.0.1."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        stop_process(self.popen, 15)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    name: str,
    argv: Sequence[str],
    *,
    workdir: Path,
    port: int,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Proc:
    """Start `argv` and wait until it accepts TCP connections on `port`."""
    log = workdir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=dict(env if env is not None else os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc = Proc(name=name, popen=popen, port=port, log=log)
    try:
        wait_for_port(port, popen, timeout, name=name, log=log)
    except TimeoutError:
        proc.stop()
        raise
    return proc


def start_simulator(workdir: Path, *, tps: float, first_token_delay: float) -> Proc:
    """The project's simulator with the send-time tap (bench.sim_tap), on uvloop: it is not
    what is measured, and the less CPU it takes, the more the processes under test get."""
    port = free_port()
    argv = [PYTHON, "-m", "bench.sim_tap", "--port", str(port), "--uvloop"]
    argv += ["--tps", str(tps), "--first-token-delay", str(first_token_delay)]
    return start("simulator", argv, workdir=workdir, port=port)


def start_relay(workdir: Path, *, base_url: str, name: str = "relay") -> Proc:
    port = free_port()
    argv = [PYTHON, "-m", "bench.baseline_relay", "--port", str(port), "--base-url", base_url]
    return start(name, argv, workdir=workdir, port=port)


def server_env(
    workdir: Path,
    *,
    llm_base_url: str,
    database_url: str,
    chroma_path: Path,
    collection: str,
    redis_url: str = "",
) -> dict[str, str]:
    """The environment of a daphne worker under load (see LOAD_LIMITS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "OPENAI_"))}
    env.pop("REDIS_URL", None)
    env.update(LOAD_LIMITS)
    env.update(
        {
            "DJANGO_SECRET_KEY": "bench-secret-key",
            "DJANGO_READ_DOT_ENV": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url,
            "CHROMA_PATH": str(chroma_path),
            "CHAT_COLLECTION": collection,
            "OPENAI_BASE_URL": llm_base_url,
            "OPENAI_API_KEY": "bench",
            "CHAT_MODEL": "simulator",
            "PYTHONUNBUFFERED": "1",
            # As the project's run commands serve (scripts/serve, the image): chat.reclaim.
            "PYTHONMALLOC": "malloc",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def manage(env: Mapping[str, str], *args: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def start_daphne(
    workdir: Path,
    env: Mapping[str, str],
    *,
    name: str = "daphne",
    backlog: int | None = None,
    app: str = "config.asgi:application",
) -> Proc:
    """A daphne worker on a free port; `backlog`: its listen backlog (Twisted's default 50)."""
    port = free_port()
    if backlog is None:
        listen = ["-b", "127.0.0.1", "-p", str(port)]
    else:
        listen = ["-e", f"tcp:port={port}:interface=127.0.0.1:backlog={backlog}"]
    # The handshake timeout the project's own launches give (scripts/serve, the Dockerfile).
    argv = [str(BIN / "daphne"), "--websocket_connect_timeout", "30", *listen, app]
    return start(name, argv, workdir=workdir, port=port, env=env)


def knowledge_base(env: Mapping[str, str]) -> Path:
    """A Chroma directory holding the sample knowledge base (knowledge/), ingested once and kept
    in the temp directory, keyed by the knowledge files' contents (ingesting takes ~20 s)."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "knowledge").rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    cache = Path(tempfile.gettempdir()) / "roomchat-bench" / f"chroma-{digest.hexdigest()[:12]}"
    if not (cache / ".complete").exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        ingest_env = {**env, "CHROMA_PATH": str(cache)}
        manage(ingest_env, "ingest", "--no-progress", str(ROOT / "knowledge"))
        (cache / ".complete").touch()
    return cache


def fresh_postgres_database(name: str, *, host: str = "127.0.0.1", port: int = 5432) -> str:
    """Drop and create database `name` (user postgres, trust auth); returns its URL."""
    import psycopg

    with psycopg.connect(f"host={host} port={port} user=postgres dbname=postgres") as conn:
        conn.autocommit = True
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@{host}:{port}/{name}"


def post_json(url: str, body: object, timeout: float = 60.0) -> object:
    import json

    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
