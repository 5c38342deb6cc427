from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chat.llm.openai_provider import OpenAIProvider
from llmsim import SimulatorServer, running_simulator


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """A simulator on this test's loop: fast by default, tests raise the delays they need."""
    async with running_simulator(tokens=12, tps=0, first_token_delay=0) as server:
        yield server


@pytest.fixture
async def make_provider(
    sim: SimulatorServer,
) -> AsyncIterator[Callable[..., OpenAIProvider]]:
    """Build OpenAIProviders pointed at `sim`, with quick backoff; closed after the test."""
    providers: list[OpenAIProvider] = []

    def make(**kwargs: Any) -> OpenAIProvider:
        kwargs.setdefault("base_url", sim.base_url)
        kwargs.setdefault("api_key", "test-key")
        kwargs.setdefault("model", "sim-model")
        kwargs.setdefault("connect_timeout", 2.0)
        kwargs.setdefault("read_timeout", 5.0)
        kwargs.setdefault("max_retries", 2)
        kwargs.setdefault("backoff_base", 0.01)
        provider = OpenAIProvider(**kwargs)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.aclose()
