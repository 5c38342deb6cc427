from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llmsim import SimulatorServer, running_simulator


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """A simulator on this test's loop: fast by default, tests raise the delays they need."""
    async with running_simulator(tokens=12, tps=0, first_token_delay=0) as server:
        yield server
