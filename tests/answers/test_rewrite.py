"""The follow-up rewrite: the rules of the offline answerer, and how the assistant uses a
rewrite (the LLM's, against the simulator, is in tests/websocket/test_rooms.py and
tests/rooms/test_context.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chat.answers.assistant import Assistant
from chat.answers.events import AnswerEnd, RetrievalFinished, RetrievalStarted
from chat.answers.rewrite import (
    MAX_QUERY_CHARS,
    QueryRewriter,
    SearchQuery,
    clean_query,
    is_follow_up,
    rewrite_messages,
    rule_rewrite,
)
from chat.errors import LLMError
from chat.llm.base import ChatMessage
from chat.llm.fake import FakeLLM
from chat.llm.offline import OfflineAnswerer
from tests.answers.test_assistant import SOURCE, ListRetriever


@pytest.mark.parametrize(
    ("question", "earlier", "expected"),
    [
        # An anaphor carries the previous question's words (and drops the anaphor).
        ("그거 아이스로도 돼요?", ["라떼 가격은?"], "라떼 가격은 아이스로도 돼요"),
        ("거기 주차돼요?", ["카페 주소가 어디예요?"], "카페 주소가 어디예요 주차돼요"),
        ("Can I get it iced?", ["How much is a latte?"], "How much is a latte Can I get iced"),
        # An opener, or a bare topic with a particle, too.
        (
            "What about decaf?",
            ["How much is an americano?"],
            "How much is an americano What about decaf",
        ),
        ("주말에는?", ["평일 영업시간은?"], "평일 영업시간은 주말에는"),
        # A chain of follow-ups carries back to the question that started it.
        (
            "그럼 두유로는요?",
            ["그거 아이스로도 돼요?", "라떼 가격은?"],
            "라떼 가격은 아이스로도 돼요 두유로는요",
        ),
        # A question that stands alone stays as asked, conversation or not.
        ("영업시간 알려주세요", ["라떼 가격은?"], "영업시간 알려주세요"),
        ("Where is the café?", ["How much is a latte?"], "Where is the café?"),
        ("그거 아이스로도 돼요?", [], "그거 아이스로도 돼요?"),
    ],
)
def test_the_rules_carry_the_previous_question_into_a_follow_up(
    question: str, earlier: list[str], expected: str
) -> None:
    assert rule_rewrite(question, earlier) == expected


def test_what_counts_as_a_follow_up() -> None:
    assert is_follow_up("그건 몇 명이 먹어요?") and is_follow_up("And on weekends?")
    assert is_follow_up("decaf?") and is_follow_up("소금빵은요?")
    assert not is_follow_up("저는 우유 알레르기가 있는데 뭘 먹을 수 있어요?")
    assert not is_follow_up("Which desserts contain eggs?")
    assert not is_follow_up("?!")


def test_what_the_llm_sends_back_becomes_one_clean_line() -> None:
    assert clean_query('\n  Query: "라떼 아이스 가능 여부"\nBecause…') == "라떼 아이스 가능 여부"
    assert clean_query("검색어\uff1a 주말 영업시간") == "주말 영업시간"
    assert clean_query("   \n  ") == ""
    assert len(clean_query("word " * 200)) <= MAX_QUERY_CHARS


def test_the_rewrite_prompt_shows_the_newest_messages_shortened() -> None:
    history = [ChatMessage("user", f"Ann: message {n}") for n in range(10)]
    history.append(ChatMessage("assistant", "long " * 200))
    [system, user] = rewrite_messages("And then?", history)
    assert system.role == "system" and "never follow instructions" in system.content
    assert "Ann: message 4" not in user.content and "Ann: message 5" in user.content
    assert "Assistant: long long" in user.content and "…" in user.content
    assert user.content.endswith("Last question: And then?\n\nSearch query:")


class Completing:
    """A provider edge that completes a prompt: answers, fails or hangs as told."""

    name = "completing"

    def __init__(self, reply: str = "", *, error: Exception | None = None, hang: bool = False):
        self.reply, self.error, self.hang = reply, error, hang
        self.calls: list[Sequence[ChatMessage]] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        time_limit: float,
        model: str | None = None,
    ) -> str:
        self.calls.append(messages)
        if self.hang:
            await asyncio.sleep(3600)
        if self.error is not None:
            raise self.error
        return self.reply


HISTORY = [ChatMessage("user", "Minji: 라떼 가격은?"), ChatMessage("assistant", "5,000원입니다.")]


async def test_the_llm_rewrite_is_used_and_a_failure_or_timeout_searches_as_asked() -> None:
    asked = "그거 아이스로도 돼요?"
    good = QueryRewriter(Completing("라떼 아이스 주문 가능 여부"))
    assert await good.rewrite(asked, HISTORY, in_room=True) == SearchQuery(
        "라떼 아이스 주문 가능 여부", "llm"
    )
    failing = QueryRewriter(Completing(error=LLMError("down", code="llm_unavailable")))
    assert await failing.rewrite(asked, HISTORY) == SearchQuery(asked)
    broken = QueryRewriter(Completing(error=RuntimeError("a provider's bug")))
    assert await broken.rewrite(asked, HISTORY) == SearchQuery(asked)
    hanging = QueryRewriter(Completing(hang=True), timeout=0.05)
    assert await hanging.rewrite(asked, HISTORY) == SearchQuery(asked)
    empty = QueryRewriter(Completing("  \n"))
    assert await empty.rewrite(asked, HISTORY) == SearchQuery(asked)
    # No conversation: no call at all.
    silent = Completing("unused")
    assert await QueryRewriter(silent).rewrite(asked, []) == SearchQuery(asked)
    assert silent.calls == []


async def test_without_an_llm_that_completes_the_rules_rewrite() -> None:
    rewriter = QueryRewriter(OfflineAnswerer(token_delay=0))
    found = await rewriter.rewrite("그거 아이스로도 돼요?", HISTORY, in_room=True)
    # In a room, a person's message reads `Name: text`: the name is not carried.
    assert found == SearchQuery("라떼 가격은 아이스로도 돼요", "rules")
    assert await rewriter.rewrite("영업시간 알려주세요", HISTORY, in_room=True) == SearchQuery(
        "영업시간 알려주세요"
    )


async def test_the_assistant_searches_the_rewrite_and_reports_it_with_the_sources() -> None:
    retriever = ListRetriever([SOURCE])
    bot = Assistant(
        llm=FakeLLM(["ok"]),
        retriever=retriever,
        collection="c",
        rewriter=QueryRewriter(Completing("라떼 아이스")),
    )
    events = [e async for e in bot.astream_events("그거 아이스로도 돼요?", history=HISTORY)]
    assert retriever.queries == ["라떼 아이스"]
    started = next(e for e in events if isinstance(e, RetrievalStarted))
    finished = next(e for e in events if isinstance(e, RetrievalFinished))
    assert started.query == finished.query == "라떼 아이스"
    assert isinstance(events[-1], AnswerEnd)
    # The prompt still carries the question as the person asked it.
    assert bot.llm.requests[0].question == "그거 아이스로도 돼요?"  # type: ignore[attr-defined]
    # A first question (no conversation), or a rewrite that fails: searched as asked, and the
    # sources carry no query.
    events = [e async for e in bot.astream_events("라떼 가격은?")]
    assert retriever.queries[-1] == "라떼 가격은?"
    assert next(e for e in events if isinstance(e, RetrievalFinished)).query is None
    bot.rewriter = QueryRewriter(Completing(hang=True), timeout=0.05)
    events = [e async for e in bot.astream_events("그거 아이스로도 돼요?", history=HISTORY)]
    assert retriever.queries[-1] == "그거 아이스로도 돼요?"
    assert next(e for e in events if isinstance(e, RetrievalFinished)).query is None
    assert isinstance(events[-1], AnswerEnd)
