"""OpenAIProvider drives the real `openai` client over real HTTP against the simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from bench.procs import free_port
from chat.errors import LLMError
from chat.llm.base import ChatMessage, LLMRequest, StreamEnd, StreamItem, TextDelta
from chat.llm.openai_provider import OpenAIProvider
from llmsim import SimulatorServer, simulated_text

from .polling import wait_until

MakeProvider = Callable[..., OpenAIProvider]


def ask(question: str = "What is streaming?") -> LLMRequest:
    return LLMRequest(
        messages=[
            ChatMessage(role="system", content="Answer from the sources."),
            ChatMessage(role="user", content=question),
        ],
        question=question,
    )


async def collect(stream: AsyncIterator[StreamItem]) -> tuple[list[str], list[StreamEnd]]:
    deltas: list[str] = []
    ends: list[StreamEnd] = []
    async for item in stream:
        assert not ends, "nothing may follow StreamEnd"
        if isinstance(item, TextDelta):
            deltas.append(item.text)
        else:
            ends.append(item)
    return deltas, ends


async def expect_error(stream: AsyncIterator[StreamItem], code: str) -> tuple[list[str], LLMError]:
    deltas: list[str] = []

    async def consume() -> None:
        async for item in stream:
            assert isinstance(item, TextDelta), "no StreamEnd on a failed stream"
            deltas.append(item.text)

    with pytest.raises(LLMError) as caught:
        await consume()
    assert caught.value.code == code, caught.value.message
    return deltas, caught.value


async def test_joined_deltas_are_the_simulated_answer_and_usage_is_reported(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    deltas, ends = await collect(make_provider().stream(ask()))

    assert "".join(deltas) == simulated_text(12)
    assert all(deltas), "only non-empty deltas"
    assert len(ends) == 1
    assert ends[0].finish_reason == "stop"
    assert ends[0].usage is not None
    assert ends[0].usage.completion_tokens == 12
    assert ends[0].usage.prompt_tokens > 0
    [record] = sim.stats()
    assert record.finished
    assert not record.client_disconnected_early


async def test_a_request_s_model_and_temperature_win_over_the_provider_s(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    await collect(provider.stream(ask()))
    chosen = ask()
    await collect(
        provider.stream(
            LLMRequest(
                messages=chosen.messages, question=chosen.question, model="other", temperature=0.2
            )
        )
    )
    default, room = sim.stats()
    assert (default.model, default.temperature) == ("sim-model", None)  # none sent
    assert (room.model, room.temperature) == ("other", 0.2)


async def test_korean_tokens_arrive_intact(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    deltas, _ = await collect(make_provider().stream(ask("[[sim tokens=40]]")))

    assert "".join(deltas) == simulated_text(40)
    assert "스트리밍 " in deltas


async def test_without_include_usage_the_stream_still_completes(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    deltas, ends = await collect(make_provider(include_usage=False).stream(ask()))

    assert "".join(deltas) == simulated_text(12)
    assert ends == [StreamEnd("stop", None)]


async def test_max_tokens_limit_ends_with_finish_reason_length(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    deltas, ends = await collect(make_provider(max_tokens=5).stream(ask()))

    assert "".join(deltas) == simulated_text(5)
    assert ends[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("fault", "code", "requests"),
    [
        ("400", "llm_rejected", 1),
        ("401", "llm_rejected", 1),
        ("429", "llm_rate_limited", 3),
        ("500", "llm_server_error", 3),
        ("503", "llm_server_error", 3),
    ],
)
async def test_http_errors_become_llm_errors_and_only_429_and_5xx_are_retried(
    sim: SimulatorServer, make_provider: MakeProvider, fault: str, code: str, requests: int
) -> None:
    sim.configure(fault=fault, retry_after=0)

    deltas, error = await expect_error(make_provider(max_retries=2).stream(ask()), code)

    assert deltas == []
    assert len(sim.stats()) == requests
    assert error.message.endswith(".")


async def test_rejection_includes_the_servers_message(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    sim.configure(fault="401")

    _, error = await expect_error(make_provider().stream(ask()), "llm_rejected")

    assert "HTTP 401" in error.message
    assert "Incorrect API key provided" in error.message
    assert isinstance(error.__cause__, Exception)


@pytest.mark.parametrize(
    ("fault", "code"),
    [("truncate", "llm_truncated"), ("drop", "llm_truncated"), ("malformed", "llm_bad_response")],
)
async def test_broken_streams_fail_after_their_deltas_without_retry(
    sim: SimulatorServer, make_provider: MakeProvider, fault: str, code: str
) -> None:
    sim.configure(fault=fault, fault_after=3)

    deltas, _ = await expect_error(make_provider(max_retries=2).stream(ask()), code)

    assert "".join(deltas) == simulated_text(3)
    assert len(sim.stats()) == 1, "never retried after the first delta"


async def test_429_waits_for_retry_after_then_succeeds(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    question = "Why? [[sim fault=429 retry_after=1 fail_times=1]]"
    started = time.monotonic()

    deltas, ends = await collect(make_provider().stream(ask(question)))

    assert time.monotonic() - started >= 0.99
    assert "".join(deltas) == simulated_text(12)
    assert ends[0].finish_reason == "stop"
    first, second = sim.stats()
    assert (first.status, first.fault) == (429, "429")
    assert second.finished


async def test_500_is_retried_with_backoff_then_succeeds(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    sim.configure(fault="500", fail_times=1)

    deltas, _ = await collect(make_provider().stream(ask()))

    assert "".join(deltas) == simulated_text(12)
    assert [r.status for r in sim.stats()] == [500, 200]


async def test_retries_stop_at_max_retries(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    sim.configure(fault="503", fail_times=5, retry_after=None)

    await expect_error(make_provider(max_retries=1).stream(ask()), "llm_server_error")

    assert len(sim.stats()) == 2


async def test_a_stalled_stream_times_out(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    sim.configure(fault="stall", fault_after=2)

    deltas, error = await expect_error(make_provider(read_timeout=0.5).stream(ask()), "llm_timeout")

    assert "".join(deltas) == simulated_text(2)
    assert "0.5 seconds" in error.message
    # Giving up closed the connection, which the simulator saw.
    await wait_until(lambda: sim.stats()[0].client_disconnected_early)
    assert len(sim.stats()) == 1


async def test_a_first_token_slower_than_the_read_timeout_is_a_timeout_not_retried(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    sim.configure(first_token_delay=3)

    await expect_error(make_provider(read_timeout=0.3).stream(ask()), "llm_timeout")

    assert len(sim.stats()) == 1


async def test_connection_refused_is_unavailable(make_provider: MakeProvider) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"

    _, error = await expect_error(
        make_provider(base_url=base_url, max_retries=1).stream(ask()), "llm_unavailable"
    )

    assert base_url in error.message


async def test_aclose_closes_the_upstream_request(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    sim.configure(tokens=500, tps=100)
    stream = make_provider().stream(ask())
    received = [await anext(stream) for _ in range(3)]

    await stream.aclose()  # type: ignore[attr-defined]

    assert all(isinstance(item, TextDelta) for item in received)
    await wait_until(lambda: sim.stats()[0].client_disconnected_early)
    record = sim.stats()[0]
    assert not record.finished
    assert record.tokens_sent < 500


async def test_cancelling_the_consuming_task_closes_the_upstream_request(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    sim.configure(tokens=500, tps=100)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in make_provider().stream(ask()):
            first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await wait_until(lambda: sim.stats()[0].client_disconnected_early)
    assert not sim.stats()[0].finished


async def test_an_empty_api_key_works_for_local_servers(
    sim: SimulatorServer, make_provider: MakeProvider
) -> None:
    """vLLM, Ollama and llama.cpp need no key; the SDK still wants one."""
    provider = make_provider(api_key="")

    deltas, _ = await collect(provider.stream(ask()))

    assert provider.api_key == "not-needed"
    assert "".join(deltas) == simulated_text(12)
