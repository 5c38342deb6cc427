"""The interface of the knowledge base search, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Source:
    """One retrieved passage. `text` is the whole chunk (goes into the prompt); `snippet` is the
    short excerpt shown to people."""

    id: str
    title: str
    source: str
    snippet: str
    score: float
    text: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "snippet": self.snippet,
            "score": round(self.score, 4),
        }


class Retriever(Protocol):
    """Finds the passages of a collection that best answer a query. Must not block the event
    loop (embedding and Chroma calls run in a thread). Raises `chat.errors.RetrievalError`."""

    async def retrieve(self, query: str, *, collection: str, k: int) -> list[Source]: ...
