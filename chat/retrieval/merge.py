"""Searching several collections as one: a room's own documents beside the shared knowledge.

Each collection is searched with the same retriever (whatever it does inside: vectors, or
vectors fused with words); the passages are merged by their score, which is the cosine
similarity to the query for every collection alike, so the best of both come first.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence

from chat.retrieval.base import Retriever, Source


def merge_by_score(results: Sequence[Sequence[Source]], k: int) -> list[Source]:
    """The `k` best passages of several result lists, by score (ties: the earlier list, then
    its own order)."""
    ranked = [
        (-source.score, which, rank, source)
        for which, found in enumerate(results)
        for rank, source in enumerate(found)
    ]
    return [entry[3] for entry in heapq.nsmallest(k, ranked, key=lambda e: e[:3])]


class SearchAcross:
    """A `Retriever` over fixed collections: the `collection` asked for is ignored and
    `collections` (none: nothing is found) are searched at once, merged by score."""

    def __init__(self, inner: Retriever, collections: Sequence[str]) -> None:
        self.inner = inner
        self.collections = tuple(dict.fromkeys(collections))  # in order, without repeats

    async def retrieve(self, query: str, *, collection: str, k: int) -> list[Source]:
        if not self.collections:
            return []
        results = await asyncio.gather(
            *(self.inner.retrieve(query, collection=name, k=k) for name in self.collections)
        )
        return merge_by_score(results, k)
