"""The offline answerer: what the chat does when no LLM is configured."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

from chat.retrieval.base import Source

from .base import LLMRequest, StreamEnd, StreamItem, TextDelta, Usage

# How much of the knowledge base to quote: enough to answer, short enough to read.
MAX_QUOTED_SOURCES = 3
MAX_EXCERPT_CHARS = 600

_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
# A word with the whitespace after it, so that joined deltas give back the text exactly.
_DELTA = re.compile(r"\s*\S+\s*")
_TOKEN = re.compile(r"\w+|[^\w\s]")

_TEXTS = {
    "en": {
        "intro": (
            "No language model is configured on this server, so I cannot write an answer. "
            "These are the passages from the knowledge base that best match your question:"
        ),
        "nothing": (
            "No language model is configured on this server, so I cannot write an answer, "
            "and I found nothing in the knowledge base that matches your question."
        ),
    },
    "ko": {
        "intro": (
            "이 서버에는 언어 모델이 설정되어 있지 않아 답변을 작성할 수 없습니다. "
            "질문과 가장 관련 있는 지식 베이스의 구절은 다음과 같습니다:"
        ),
        "nothing": (
            "이 서버에는 언어 모델이 설정되어 있지 않아 답변을 작성할 수 없으며, "
            "지식 베이스에서 질문과 관련된 내용을 찾지 못했습니다."
        ),
    },
}


class OfflineAnswerer:
    """The default provider when no LLM is configured: quotes the best retrieved passages and
    says plainly that no model wrote them. Streams like a real model, so the chat behaves the
    same with or without one."""

    name = "offline"

    def __init__(self, *, token_delay: float | None = None) -> None:
        # None: read CHAT_OFFLINE_TOKEN_DELAY on each answer (settings may change in tests).
        self._token_delay = token_delay

    @property
    def token_delay(self) -> float:
        if self._token_delay is not None:
            return self._token_delay
        from django.conf import settings

        return max(0.0, float(settings.CHAT_OFFLINE_TOKEN_DELAY))

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        """Yield the composed answer word by word, then `StreamEnd("stop")`."""
        text = compose_answer(request.question, request.sources)
        delay = self.token_delay
        for piece in _DELTA.findall(text):
            # sleep(0) still yields to the loop, so a long quote never starves other sockets.
            await asyncio.sleep(delay)
            yield TextDelta(piece)
        prompt = "\n".join(m.content for m in request.messages) or request.question
        usage = Usage(
            prompt_tokens=rough_token_count(prompt), completion_tokens=rough_token_count(text)
        )
        yield StreamEnd("stop", usage)


def is_mostly_hangul(text: str) -> bool:
    """True when more than half of the letters are Hangul."""
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return False
    return sum(1 for char in letters if _HANGUL.match(char)) * 2 > len(letters)


def compose_answer(question: str, sources: Sequence[Source]) -> str:
    """The offline answer as Markdown, in Korean for a mostly Hangul question, else English."""
    texts = _TEXTS["ko" if is_mostly_hangul(question) else "en"]
    if not sources:
        return texts["nothing"]
    parts = [texts["intro"]]
    for number, source in enumerate(sources[:MAX_QUOTED_SOURCES], start=1):
        title = " ".join((source.title or source.source or source.id).split())
        heading = f"**{number}. {title}**"
        if source.source and source.source != title:
            heading += f" ({source.source})"
        quote = "\n".join(f"> {line}" if line else ">" for line in _excerpt(source).splitlines())
        parts.append(f"{heading}\n\n{quote}")
    return "\n\n".join(parts)


def _excerpt(source: Source) -> str:
    text = (source.text or source.snippet).strip()
    if len(text) <= MAX_EXCERPT_CHARS:
        return text
    cut = text[:MAX_EXCERPT_CHARS]
    # End on a word boundary when there is one reasonably close.
    space = cut.rfind(" ")
    if space > MAX_EXCERPT_CHARS // 2:
        cut = cut[:space]
    return cut.rstrip() + " …"


def rough_token_count(text: str) -> int:
    """Words and punctuation marks: a rough stand-in for a tokenizer, good enough for usage."""
    return len(_TOKEN.findall(text))
