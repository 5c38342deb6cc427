"""Several real workers on one machine, for the multi-worker tests in this package.

`redis_server()` and `postgres_database()` find or start what the workers share; `Cluster`
runs N daphne processes (and, optionally, nginx in front of them) and can kill a worker,
restart one, restart a throwaway Redis, and tell which worker owns an answer. Nothing here
touches the machine's own services beyond creating (and dropping) one database.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import free_port, free_ports, reachable, stop_process, wait_for_port
from bench.redis_server import RedisServer as RedisServer
from bench.redis_server import redis_server as redis_server
from tests.servers import BIN, ROOT, migrate, server_env


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), wherever the installed
    version put them: PG_BIN if set; else `pg_config --bindir`, the newest
    /usr/lib/postgresql/*/bin (Debian, Ubuntu) or initdb's folder on PATH, the first that holds
    initdb (Debian's pg_config may name a client-only folder). scripts/lib.sh: find_pg_bin is the
    same search for the scripts."""
    if os.environ.get("PG_BIN"):
        chosen = Path(os.environ["PG_BIN"])
        if not (chosen / "initdb").is_file():
            raise RuntimeError(f"PG_BIN={chosen} holds no initdb: point it at PostgreSQL's bin")
        return chosen
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and os.access(folder / "initdb", os.X_OK):
            return folder
    raise RuntimeError(
        "no PostgreSQL server programs (initdb): install Debian's postgresql package "
        "(./scripts/test does, as root), set PG_BIN to the folder holding initdb, "
        "or run a server on 127.0.0.1:5432 that trusts the user postgres"
    )


# --- PostgreSQL -------------------------------------------------------------------------------


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated database for this test session; yields its postgres:// URL. On the
    reachable server (127.0.0.1:5432, user postgres) if there is one, else in a throwaway
    cluster (initdb) that is removed afterwards."""
    name = f"roomchat_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if reachable("127.0.0.1", 5432) and _psql(5432, "select 1"):
        _psql(5432, f'create database "{name}"', check=True)
        try:
            yield _migrated(f"postgres://postgres@127.0.0.1:5432/{name}")
        finally:
            _psql(5432, f'drop database if exists "{name}" with (force)')
        return
    pg_bin = postgres_bin()
    datadir = Path(tempfile.mkdtemp(prefix="roomchat-pg-"))
    port = free_port()
    # initdb refuses to run as root: run the server as the postgres user then.
    run = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run:
        shutil.chown(datadir, "postgres")
    subprocess.run(
        [*run, str(pg_bin / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run,
            str(pg_bin / "pg_ctl"),
            "-D",
            str(datadir),
            "-l",
            str(datadir / "log"),
            "-o",
            f"-p {port} -k {datadir} -h 127.0.0.1",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        _psql(port, f'create database "{name}"', check=True)
        yield _migrated(f"postgres://postgres@127.0.0.1:{port}/{name}")
    finally:
        subprocess.run(
            [*run, str(pg_bin / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(datadir, ignore_errors=True)


def _psql(port: int, sql: str, *, check: bool = False) -> bool:
    result = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-w",  # never prompt: a server that wants a password (Debian's default) is not ours
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ],
        capture_output=True,
        timeout=30,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.decode()}")
    return result.returncode == 0


def _migrated(url: str) -> str:
    migrate({**server_env(Path(tempfile.gettempdir())), "DATABASE_URL": url})
    return url


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Worker:
    index: int
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Cluster:
    """N daphne workers sharing one Redis and one PostgreSQL database (and nginx, maybe)."""

    env: dict[str, str]
    tmp: Path
    redis: RedisServer
    workers: list[Worker] = field(default_factory=list)
    balancer_port: int | None = None
    _balancer: subprocess.Popen[bytes] | None = None

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.workers[index].port}"

    def ws_url(self, index: int | None, room: str, after: int | None = None) -> str:
        """The room's WebSocket URL on one worker, or through the balancer (index None)."""
        port = self.balancer_port if index is None else self.workers[index].port
        query = f"?after={after}" if after is not None else ""
        return f"ws://127.0.0.1:{port}/ws/rooms/{room}/{query}"

    def start_worker(self, index: int, *, wait: bool = True) -> None:
        worker = self.workers[index]
        with open(worker.log, "ab") as out:
            worker.process = subprocess.Popen(
                [
                    str(BIN / "daphne"),
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(worker.port),
                    "config.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            wait_for_port(worker.port, worker.process, timeout=60)

    def kill(self, index: int) -> None:
        """SIGKILL a worker: no cleanup runs, exactly like a crashed machine's process."""
        worker = self.workers[index]
        if worker.process is not None:
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait(10)

    def stop_worker(self, index: int) -> None:
        worker = self.workers[index]
        if worker.process is not None:
            stop_process(worker.process, 15)

    def restart_redis(self) -> None:
        self.redis.restart()

    def owner_of(self, answer_id: str) -> int | None:
        """Index of the worker holding the answer's lease (the worker id holds its pid)."""
        result = subprocess.run(
            ["redis-cli", "-u", self.redis.url, "get", f"chat:owner:{answer_id}"],
            capture_output=True,
            timeout=5,
        )
        channel = result.stdout.decode().strip()
        for worker in self.workers:
            if worker.process is not None and f"-{worker.pid}-" in channel:
                return worker.index
        return None

    def session_cookie(self, index: int = 0, room: str = "lobby") -> str:
        """A guest session (the room page creates one), as a Cookie header value: the same
        person on every worker (sessions live in the shared database)."""
        with urllib.request.urlopen(f"{self.url(index)}/rooms/{room}/", timeout=20) as reply:
            cookies = reply.headers.get_all("Set-Cookie") or []
        session = [c.split(";")[0] for c in cookies if c.startswith("sessionid=")]
        assert session, f"no session cookie in {cookies}"
        return session[0]

    def logs(self, index: int) -> str:
        return self.workers[index].log.read_text(errors="replace")

    def start_balancer(self) -> bool:
        """nginx in front of the workers (round robin, WebSocket upgrade); False if absent."""
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx is None:
            return False
        self.balancer_port = free_port()
        prefix = self.tmp / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(self.balancer_port, [w.port for w in self.workers], prefix))
        with open(prefix / "stdout.log", "ab") as log:
            self._balancer = subprocess.Popen(
                [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.balancer_port, self._balancer)
        return True

    def stop(self) -> None:
        if self._balancer is not None:
            stop_process(self._balancer)
        for worker in self.workers:
            self.stop_worker(worker.index)


def nginx_config(port: int, upstreams: list[int], prefix: Path) -> str:
    """A minimal nginx that balances WebSockets over the workers (see deploy/nginx.conf)."""
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
    return f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream workers {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://workers;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_buffering off;
        }}
    }}
}}
"""


@contextmanager
def cluster(
    *,
    redis: RedisServer,
    database_url: str,
    tmp: Path,
    workers: int = 2,
    balancer: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """`workers` daphne processes on distinct free ports sharing `redis` and the database."""
    full_env = server_env(
        tmp,
        {
            "REDIS_URL": redis.url,
            "DATABASE_URL": database_url,
            # Short leases so a dead worker's answers end quickly (the default is 3 s too).
            "CHAT_LEASE_SECONDS": "3",
            # Every member here is a guest from 127.0.0.1, hundreds of them at once.
            "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "100000",
            "DJANGO_LOG_LEVEL": "INFO",
            **(env or {}),
        },
    )
    group = Cluster(env=full_env, tmp=tmp, redis=redis)
    group.workers = [
        Worker(index=i, port=port, log=tmp / f"worker{i}.log")
        for i, port in enumerate(free_ports(workers))
    ]
    try:
        for worker in group.workers:  # all at once: each takes seconds to import Django
            group.start_worker(worker.index, wait=False)
        for worker in group.workers:
            wait_for_port(worker.port, worker.process, timeout=60)
        if balancer and not group.start_balancer():
            raise RuntimeError("nginx is not installed (scripts/provision-test installs it)")
        yield group
    finally:
        group.stop()
