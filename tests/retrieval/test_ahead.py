"""`chat.retrieval.ahead`: queries embedded before their search. The embedding here is a
counting stand-in (the edge of a unit test); tests/retrieval/test_retriever.py runs the real
model and Chroma."""

from __future__ import annotations

import asyncio

import pytest

from chat.retrieval import ahead
from chat.retrieval.ahead import QueriesAhead


class Embedder:
    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, texts: list[str]) -> list[object]:
        self.calls.append(list(texts))
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("the model is away")
        return [f"vector of {text}" for text in texts]


async def test_a_query_not_prefetched_has_no_vector() -> None:
    embed = Embedder()
    queries = QueriesAhead(embed, max_batch=8)
    assert await queries.vector("latte") is None
    queries.prefetch("   ")
    assert len(queries) == 0 and embed.calls == []


async def test_prefetches_of_one_turn_are_one_batch_and_each_search_waits_for_its_own() -> None:
    embed = Embedder()
    queries = QueriesAhead(embed, max_batch=8)
    for text in ("latte", "mocha", "latte"):
        queries.prefetch(text)
    assert await asyncio.gather(queries.vector("mocha"), queries.vector("latte")) == [
        "vector of mocha",
        "vector of latte",
    ]
    assert embed.calls == [["latte", "mocha"]]
    assert await queries.vector("latte") == "vector of latte"  # a second search shares it


async def test_a_failed_embedding_leaves_the_search_to_embed_and_report() -> None:
    queries = QueriesAhead(Embedder(fail=True), max_batch=8)
    queries.prefetch("latte")
    assert await queries.vector("latte") is None


async def test_a_cancelled_search_does_not_cancel_the_embedding_another_waits_for() -> None:
    queries = QueriesAhead(Embedder(), max_batch=8)
    queries.prefetch("latte")
    first = asyncio.ensure_future(queries.vector("latte"))
    second = asyncio.ensure_future(queries.vector("latte"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "vector of latte"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_held_a_few_seconds_and_a_bounded_number() -> None:
    now = [1000.0]
    embed = Embedder()
    queries = QueriesAhead(embed, max_batch=8, clock=lambda: now[0])
    queries.max_ahead = 3
    for text in ("a", "b", "c", "d"):
        queries.prefetch(text)
    assert len(queries) == 3
    assert await queries.vector("a") is None  # the oldest made room
    assert await queries.vector("d") == "vector of d"
    now[0] += ahead.KEEP_SECONDS + 0.1
    assert await queries.vector("d") is None  # its search never came: forgotten
    assert len(queries) == 0
