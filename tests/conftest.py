"""Shared fixtures: a fresh worker per test (each test has its own event loop), the LLM
simulator behind the real `openai` client, helpers to talk to the ASGI application, and a real
daphne process with accounts and API keys (one per session: starting one costs seconds) for
the HTTP API's and the management commands' tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from channels.testing import WebsocketCommunicator

from chat import storage
from chat.identity import Identity
from chat.llm import aclose_provider, reset_provider
from chat.runtime import reset_runtime
from tests.servers import BIN, ROOT, daphne, migrate, server_env
from tests.sse_client import SseReader


@pytest.fixture(autouse=True)
async def _fresh_runtime() -> AsyncIterator[None]:
    """The process-wide runtime is bound to an event loop; each test gets its own."""
    await reset_runtime()
    reset_provider()
    yield
    await reset_runtime()
    await aclose_provider()


@pytest.fixture
def simulator() -> Iterator[Any]:
    """The project's OpenAI-compatible simulator, in a thread, over real HTTP."""
    from llmsim import SimulatorThread

    with SimulatorThread(tps=400, first_token_delay=0.0, tokens=12) as sim:
        yield sim


@pytest.fixture
async def llm(settings: Any, simulator: Any) -> AsyncIterator[Any]:
    """Point the chat at the simulator through the real OpenAI provider. Answers still running
    when the test ends are stopped before the simulator is: one whose request is on its way
    would otherwise meet a simulator shutting down, and leave it a half-open connection."""
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_API_KEY = "sim-key"
    settings.CHAT_LLM_READ_TIMEOUT = 5.0
    reset_provider()
    yield simulator
    await reset_runtime()
    await aclose_provider()


class Client:
    """A WebSocket client of the real ASGI application, with protocol helpers."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.welcome: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(await self.ws.receive_from(timeout=timeout))

    async def recv_until(
        self, predicate: Any, timeout: float = 15.0, skip_presence: bool = True
    ) -> list[dict[str, Any]]:
        """Frames up to and including the first that matches `predicate`."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout=timeout)
                if skip_presence and frame["type"] == "presence":
                    continue
                frames.append(frame)
                if predicate(frame):
                    return frames

    async def answer(self, text: str, **extra: Any) -> list[dict[str, Any]]:
        """Ask and collect room events until that answer's end."""
        await self.send({"type": "ask", "text": text, **extra})
        return await self.recv_until(lambda f: f["type"] == "answer.end")

    async def close(self) -> None:
        await self.ws.disconnect()


async def connect(
    room: str = "lobby",
    *,
    query: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Client:
    from config.asgi import application

    path = f"/ws/rooms/{room}/" + (f"?{query}" if query else "")
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, code = await communicator.connect(timeout=10)
    assert connected, f"refused with {code}"
    client = Client(communicator)
    first = await client.recv()
    while first["type"] == "presence":
        first = await client.recv()
    assert first["type"] == "welcome", first
    client.welcome = first
    return client


@pytest.fixture(scope="session")
def knowledge_base(django_db_blocker: Any) -> str:
    """The sample knowledge base, ingested once into the test Chroma directory."""
    from django.conf import settings
    from django.core.management import call_command

    from chat.retrieval import reset_retriever

    call_command("ingest", str(settings.BASE_DIR / "knowledge"), verbosity=0)
    reset_retriever()
    return settings.CHAT_COLLECTION


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` (for state that has nothing to await) until truthy, with a deadline."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)


def ask_to_store(
    room: str,
    message_id: str,
    who: Identity,
    text: str,
    *,
    answer_id: str | None = None,
    client_id: str | None = None,
) -> storage.QuestionToStore:
    """An ask's write as admission makes it: not an edit, ten messages of context; with
    `answer_id`, its answer's row too."""
    return storage.QuestionToStore(
        room_name=room,
        message_id=message_id,
        identity=who,
        text=text,
        client_id=client_id,
        edits=None,
        context_limit=10,
        answer_id=answer_id,
    )


# --- a real server: the HTTP API and the management commands -------------------------------

# Small so the tests see them without waiting; each test uses its own account, so the
# per-person limits of one test never reach another.
KEEPALIVE_SECONDS = 0.5
ASK_BURST = 3
ASK_RATE_PER_MINUTE = 6
ACCOUNTS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "vera",
    "walt",
    # The documents tests (tests/api/test_documents.py).
    "olga",
    "pavel",
    "quinn",
    "rosa",
)
PASSWORD = "correct-horse-battery"
DOCUMENT_MAX_BYTES = 256 * 1024
ROOM_DOCUMENTS = 3


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
            # The simulator answers a rewrite with its stock text, which would become the
            # search query of every follow-up here; the rewrite has its own tests
            # (tests/websocket/test_rooms.py, tests/answers/test_rewrite.py).
            "CHAT_REWRITE": "false",
            # Small, so the documents tests pass them with small files.
            "CHAT_DOCUMENT_MAX_BYTES": str(DOCUMENT_MAX_BYTES),
            "CHAT_ROOM_DOCUMENTS": str(ROOM_DOCUMENTS),
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
