"""Making the assistant that answers in a room, from the settings and the room's own choices.

No per-room cache: an `Assistant` is a few references (the process's LLM provider and
retriever are built once, in `chat.llm` and `chat.retrieval`), and the room's settings come
with the question's own database write (`storage.create_question`), so a change made on the
page, through the API or in the admin reaches every worker's next answer.
"""

from __future__ import annotations

from django.conf import settings

from chat.answers.assistant import Assistant
from chat.answers.rewrite import QueryRewriter
from chat.llm import get_provider
from chat.retrieval import get_retriever
from chat.retrieval.base import Retriever
from chat.retrieval.merge import SearchAcross
from chat.rooms.configuration import AnswerSettings


def assistant_for(room: AnswerSettings | None = None) -> Assistant:
    """The assistant with a room's settings (None, or blank ones: the server's). A model the
    allow-list (CHAT_MODELS) no longer holds is not used: the server's default answers."""
    room = room or AnswerSettings()
    llm = get_provider()
    model = room.model if room.model in settings.CHAT_MODELS else None
    collection, retriever = knowledge_of(room)
    return Assistant(
        llm=llm,
        retriever=retriever,
        collection=collection,
        k=settings.CHAT_RETRIEVAL_K,
        system_prompt=room.system_prompt or settings.CHAT_SYSTEM_PROMPT,
        assistant_name=room.assistant_name,
        model=model,
        temperature=room.temperature,
        rewriter=QueryRewriter(
            llm,
            timeout=settings.CHAT_REWRITE_TIMEOUT,
            max_tokens=settings.CHAT_REWRITE_MAX_TOKENS,
            model=model,
        )
        if settings.CHAT_REWRITE
        else None,
    )


def knowledge_of(room: AnswerSettings) -> tuple[str, Retriever]:
    """Where a room's answers search: the shared collection (the room's choice, else
    CHAT_COLLECTION), its own documents' collection (chat.documents) once it has one, or both,
    merged by score; the owner may turn the shared one off."""
    shared = room.collection or settings.CHAT_COLLECTION
    own = room.documents_collection
    if room.use_shared and not own:
        return shared, get_retriever()
    collections = ([shared] if room.use_shared else []) + ([own] if own else [])
    return (own or shared), SearchAcross(get_retriever(), collections)
