"""How a question, the conversation so far and the retrieved passages become a prompt."""

from __future__ import annotations

from collections.abc import Sequence

from chat.llm.base import ChatMessage
from chat.retrieval.base import Source

DEFAULT_SYSTEM_PROMPT = (
    "You are the assistant of a shared chat room. Several people read your answers. "
    "Answer from the context passages below when they are relevant, and say so when they do "
    "not contain the answer. Cite passages by their number like [1]. Answer in the language "
    "of the question (Korean or English). Use Markdown."
)


def build_messages(
    question: str,
    *,
    sources: Sequence[Source],
    history: Sequence[ChatMessage],
    system_prompt: str = "",
) -> list[ChatMessage]:
    """System prompt with the numbered passages, then the conversation, then the question."""
    parts = [system_prompt or DEFAULT_SYSTEM_PROMPT]
    if sources:
        parts.append("Context passages:")
        for number, source in enumerate(sources, start=1):
            parts.append(f"[{number}] {source.title} ({source.source})\n{source.text}")
    else:
        parts.append("No passages of the knowledge base matched this question.")
    messages = [ChatMessage(role="system", content="\n\n".join(parts))]
    messages.extend(history)
    messages.append(ChatMessage(role="user", content=question))
    return messages
