"""Making the assistant that answers in a room, from the settings and the room's collection.

No per-room cache: an `Assistant` is a few references (the process's LLM provider and
retriever are built once, in `chat.llm` and `chat.retrieval`), and the room's collection comes
with the question's own database write (`storage.create_question`), so a change made in the
admin reaches every worker's next answer.
"""

from __future__ import annotations

from django.conf import settings

from chat.answers.assistant import Assistant
from chat.llm import get_provider
from chat.retrieval import get_retriever


def assistant_for(collection: str = "") -> Assistant:
    """The assistant searching `collection` (blank: the server's CHAT_COLLECTION)."""
    return Assistant(
        llm=get_provider(),
        retriever=get_retriever(),
        collection=collection or settings.CHAT_COLLECTION,
        k=settings.CHAT_RETRIEVAL_K,
        system_prompt=settings.CHAT_SYSTEM_PROMPT,
    )
