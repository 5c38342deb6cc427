"""A real daphne process serving the project for the API tests (one per session: starting one
costs seconds), the LLM simulator it talks to, and accounts with API tokens."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.sse_client import SseReader
from tests.servers import BIN, ROOT, daphne, migrate, server_env

# Small so the tests see them without waiting; each test uses its own account, so the
# per-person limits of one test never reach another.
KEEPALIVE_SECONDS = 0.5
ASK_BURST = 3
ASK_RATE_PER_MINUTE = 6
ACCOUNTS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]
    keys: dict[str, str]  # username -> API key

    def auth(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[username]}"}


@pytest.fixture(scope="session")
def api_simulator() -> Iterator[Any]:
    """The LLM simulator for the whole session (the server outlives any one test)."""
    from llmsim import SimulatorThread

    with SimulatorThread(tps=0, first_token_delay=0.0, tokens=12) as sim:
        yield sim


_MAKE_ACCOUNTS = """
import json
from django.contrib.auth.models import User
from chat.models import ApiToken
keys = {}
for name in %r:
    user = User.objects.create_user(name, password=%r, is_staff=(name == "judy"))
    keys[name] = ApiToken.issue(user, name="tests")[1]
print(json.dumps(keys))
"""


@pytest.fixture(scope="session")
def api_server(
    tmp_path_factory: pytest.TempPathFactory, api_simulator: Any, knowledge_base: str
) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("api-server")
    env = server_env(
        tmp,
        {
            "OPENAI_BASE_URL": api_simulator.base_url,
            "OPENAI_API_KEY": "sim-key",
            "CHAT_LLM_READ_TIMEOUT": "5",
            "CHAT_SSE_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
            "CHAT_ASK_BURST": str(ASK_BURST),
            "CHAT_ASK_RATE_PER_MINUTE": str(ASK_RATE_PER_MINUTE),
        },
    )
    migrate(env)
    made = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", _MAKE_ACCOUNTS % (ACCOUNTS, PASSWORD)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    keys = json.loads(made.stdout.strip().splitlines()[-1])
    log = tmp / "daphne.log"
    with daphne(env, log=log) as url:
        yield Server(url=url, env=env, keys=keys)
    # Errors inside the server (a task failing after its request ended, ...) never reach a
    # client: they must not pass unnoticed.
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and " ERROR " not in text, text[-5000:]


@pytest.fixture
async def http(api_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=20) as client:
        yield client


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient, path: str, *, method: str = "GET", **kwargs: Any
) -> AsyncIterator[SseReader]:
    """An event stream; leaving the block closes the connection (a client going away)."""
    async with client.stream(method, path, **kwargs) as response:
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)
