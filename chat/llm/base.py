"""The interface every LLM provider implements, and the items its stream yields."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from chat.retrieval.base import Source


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the prompt, in OpenAI's chat format."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def to_wire(self) -> dict[str, int]:
        """The `usage` of an `answer.end` frame (and of the stored answer)."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """Everything a provider may need: the full prompt, and the raw parts for the offline one.
    `model` and `temperature` are a room's own choice (None: the provider's default); a provider
    that has no such knob (offline, fake) accepts them and does without."""

    messages: Sequence[ChatMessage]
    question: str
    sources: Sequence[Source] = field(default_factory=tuple)
    model: str | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A non-empty piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The provider finished normally: the model sent a finish reason."""

    finish_reason: str
    usage: Usage | None = None


StreamItem = TextDelta | StreamEnd


class Completer(Protocol):
    """A provider that can also answer a short prompt in one piece, without streaming (the
    follow-up rewrite, `chat.answers.rewrite`). Raises `chat.errors.LLMError`; never retries:
    whoever calls it is waiting on a short deadline."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        time_limit: float,
        model: str | None = None,
    ) -> str: ...


class LLMProvider(Protocol):
    """Streams one answer. The stream yields `TextDelta`s then exactly one `StreamEnd`, or raises
    `chat.errors.LLMError`. Whoever iterates it must exhaust it or `aclose()` it; the provider
    closes its upstream HTTP response in `finally`, so a cancelled answer stops the LLM.
    A request's `model` and `temperature`, when set, win over the provider's own defaults."""

    name: str

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]: ...
