"""The offline answerer (the no-LLM default) and the FakeLLM test double."""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings

from chat.llm.base import ChatMessage, LLMRequest, StreamEnd, TextDelta
from chat.llm.fake import FakeLLM
from chat.llm.offline import MAX_EXCERPT_CHARS, OfflineAnswerer, compose_answer, is_mostly_hangul
from chat.retrieval.base import Source


def source(number: int, text: str = "Rooms share one answer stream.") -> Source:
    return Source(
        id=f"doc-{number}",
        title=f"Guide {number}",
        source=f"guide-{number}.md",
        snippet=text[:40],
        score=1.0 / number,
        text=text,
    )


def request(question: str, sources: list[Source]) -> LLMRequest:
    return LLMRequest(
        messages=[ChatMessage(role="user", content=question)], question=question, sources=sources
    )


async def run(answerer: OfflineAnswerer, req: LLMRequest) -> tuple[list[str], StreamEnd]:
    deltas: list[str] = []
    end = None
    async for item in answerer.stream(req):
        if isinstance(item, TextDelta):
            deltas.append(item.text)
        else:
            end = item
    assert end is not None
    return deltas, end


@pytest.fixture(autouse=True)
def no_delay(settings: Settings) -> None:
    settings.CHAT_OFFLINE_TOKEN_DELAY = 0


async def test_english_question_gets_quoted_passages_and_a_plain_notice() -> None:
    req = request("How do rooms share answers?", [source(1), source(2)])

    deltas, end = await run(OfflineAnswerer(), req)

    text = "".join(deltas)
    assert text == compose_answer(req.question, req.sources)
    assert text.startswith("No language model is configured")
    assert "**1. Guide 1** (guide-1.md)" in text
    assert "> Rooms share one answer stream." in text
    assert len(deltas) > 10, "streams word by word"
    assert end.finish_reason == "stop"
    assert end.usage is not None
    assert end.usage.completion_tokens > 0
    assert end.usage.prompt_tokens > 0


async def test_korean_question_gets_a_korean_notice() -> None:
    req = request(
        "방은 답변을 어떻게 공유하나요?", [source(1, "방은 하나의 답변 스트림을 공유합니다.")]
    )

    deltas, _ = await run(OfflineAnswerer(), req)

    text = "".join(deltas)
    assert "언어 모델이 설정되어 있지 않아" in text
    assert "> 방은 하나의 답변 스트림을 공유합니다." in text


@pytest.mark.parametrize(
    ("question", "needle"),
    [
        ("What is the refund policy?", "found nothing in the knowledge base"),
        ("환불 정책이 뭔가요?", "찾지 못했습니다"),
    ],
)
async def test_no_sources_says_nothing_was_found(question: str, needle: str) -> None:
    deltas, end = await run(OfflineAnswerer(), request(question, []))

    assert needle in "".join(deltas)
    assert end.finish_reason == "stop"


def test_language_detection_and_long_excerpts() -> None:
    assert is_mostly_hangul("이 API는 어떻게 쓰나요?")
    assert not is_mostly_hangul("How do I use 방?")
    assert not is_mostly_hangul("1234 ?")
    text = compose_answer("q", [source(1, "word " * 1000)])
    assert text.endswith(" …")
    assert len(text) < MAX_EXCERPT_CHARS + 300


async def test_token_delay_comes_from_settings(settings: Settings) -> None:
    settings.CHAT_OFFLINE_TOKEN_DELAY = 0.25

    assert OfflineAnswerer().token_delay == 0.25
    assert OfflineAnswerer(token_delay=0).token_delay == 0


async def test_fake_llm_streams_its_script() -> None:
    fake = FakeLLM(["a", "b"])

    items = [item async for item in fake.stream(request("q", []))]

    assert items[:2] == [TextDelta("a"), TextDelta("b")]
    assert isinstance(items[2], StreamEnd)
    assert (fake.started, fake.completed, fake.closed_early) == (1, 1, False)
    assert fake.requests[0].question == "q"


async def test_fake_llm_raises_after_n_deltas() -> None:
    fake = FakeLLM(["a", "b", "c"], error=RuntimeError("boom"), error_after=2)
    seen: list[object] = []

    async def consume() -> None:
        async for item in fake.stream(request("q", [])):
            seen.append(item)

    with pytest.raises(RuntimeError, match="boom"):
        await consume()

    assert seen == [TextDelta("a"), TextDelta("b")]
    assert not fake.closed_early


async def test_fake_llm_records_an_early_close() -> None:
    fake = FakeLLM(["a", "b", "c"], delay=0.01)
    stream = fake.stream(request("q", []))

    assert await anext(stream) == TextDelta("a")
    await stream.aclose()  # type: ignore[attr-defined]

    assert fake.closed_early
    assert fake.closed.is_set()


async def test_a_room_s_model_and_temperature_are_accepted_where_there_is_no_such_knob() -> None:
    """Offline and fake providers take a request with a room's model and temperature and
    answer as they always do (the fake keeps the request, for tests to look at)."""
    plain = request("How do rooms work?", [source(1)])
    chosen = LLMRequest(
        messages=plain.messages,
        question=plain.question,
        sources=plain.sources,
        model="sim-large",
        temperature=0.7,
    )
    offline = OfflineAnswerer(token_delay=0)
    texts = [
        "".join([i.text async for i in offline.stream(r) if isinstance(i, TextDelta)])
        for r in (plain, chosen)
    ]
    assert texts[0] == texts[1] and texts[0]
    fake = FakeLLM(["ok"])
    assert [i async for i in fake.stream(chosen)][-1] == StreamEnd("stop", fake.usage)
    assert (fake.requests[0].model, fake.requests[0].temperature) == ("sim-large", 0.7)
