"""Typed events of one answer, as `Assistant.astream_events` yields them.

Order: `RetrievalStarted`, `RetrievalFinished`, zero or more `AnswerDelta`, then exactly one
of `AnswerEnd` or `AnswerError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.errors import ChatError
from chat.llm.base import TextDelta, Usage
from chat.retrieval.base import Source


@dataclass(frozen=True, slots=True)
class RetrievalStarted:
    """The knowledge base is being searched for `query`."""

    query: str


@dataclass(frozen=True, slots=True)
class RetrievalFinished:
    """The passages the answer will be grounded in (may be empty), and what was searched for
    them when that is not the question as asked (a follow-up rewritten), else None."""

    sources: list[Source]
    query: str | None = None


# A non-empty piece of the answer, in order: the provider's own delta, passed on as it is.
AnswerDelta = TextDelta


@dataclass(frozen=True, slots=True)
class AnswerEnd:
    """The answer is complete. `text` is every delta joined."""

    text: str
    usage: Usage | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class AnswerError:
    """The answer failed; `text` is what was produced before the failure."""

    error: ChatError
    text: str = ""


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """A whole answer, as `Assistant.ainvoke` returns it."""

    text: str
    sources: list[Source] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str = "stop"


AnswerEvent = RetrievalStarted | RetrievalFinished | AnswerDelta | AnswerEnd | AnswerError
