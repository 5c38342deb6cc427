"""Memory a crowd took goes back (chat.reclaim): when a reclaim is due, that the sweep makes it,
and that a closed socket's own objects are freed when it closes, not left to the collector."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest

from chat import reclaim
from chat.consumers import ChatConsumer
from chat.realtime.outbox import Outbox
from chat.reclaim import Reclaimer
from chat.runtime import get_runtime
from tests.conftest import connect


def test_a_reclaim_waits_for_enough_closes_for_the_crowd_to_be_gone_and_for_leaving_to_settle() -> (
    None
):
    reclaimer = Reclaimer(after_closes=100)
    assert not reclaimer.due(closed_total=99, connected=0)  # too few closes
    assert not reclaimer.due(closed_total=99, connected=0)
    # Enough closes, but more people here than have left: the collection would be costly.
    assert not reclaimer.due(closed_total=150, connected=200)
    assert not reclaimer.due(closed_total=150, connected=200)
    # The rest leave: not while they are leaving (60 closes since the last sweep) ...
    assert not reclaimer.due(closed_total=210, connected=140)
    # ... but once it settled (a few since the last sweep).
    assert reclaimer.due(closed_total=215, connected=135)
    reclaimer.reclaim(closed_total=215)
    # Counted again from the reclaim.
    assert not reclaimer.due(closed_total=320, connected=0)
    assert reclaimer.due(closed_total=325, connected=0)


def test_zero_turns_reclaiming_off() -> None:
    reclaimer = Reclaimer(after_closes=0)
    assert not reclaimer.due(closed_total=10**6, connected=0)
    assert not reclaimer.due(closed_total=10**6, connected=0)


def test_a_reclaim_collects_cycles_and_says_what_it_gave_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Node:
        other: Any = None

    gc.disable()  # the cycles wait for the reclaim, not for the youngest generation's turn
    try:
        for _ in range(1000):
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        caplog.set_level(logging.INFO, logger="chat.reclaim")
        result = Reclaimer(after_closes=1).reclaim(closed_total=1)
    finally:
        gc.enable()
    assert result.collected >= 2000
    assert result.trimmed  # glibc here
    assert result.rss_before is not None and result.rss_after is not None
    assert "Memory reclaimed after a crowd left" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_the_idle_sweep_reclaims_once_a_crowd_has_gone(
    settings: Any, llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CHAT_MEMORY_RECLAIM_AFTER_CLOSES = 10
    runtime = await get_runtime()
    runtime.reclaimer = Reclaimer(settings.CHAT_MEMORY_RECLAIM_AFTER_CLOSES)
    made: list[int] = []
    real = Reclaimer.reclaim

    def counted(self: Reclaimer, closed_total: int) -> reclaim.Reclaimed:
        made.append(closed_total)
        return real(self, closed_total)

    monkeypatch.setattr(Reclaimer, "reclaim", counted)
    stays = await connect("crowd-0")
    crowd = [await connect(f"crowd-{i % 3}") for i in range(12)]
    before = runtime.hub.left_total
    assert runtime.hub.connected >= 13
    await runtime._forget_idle_rooms()
    assert made == []  # nobody left yet
    for member in crowd:
        await member.close()
    assert runtime.hub.left_total - before == 12
    await runtime._forget_idle_rooms()
    assert made == []  # the leaving had not settled at the previous sweep
    await runtime._forget_idle_rooms()
    assert made == [runtime.hub.left_total]
    await runtime._forget_idle_rooms()
    assert len(made) == 1
    await stays.close()


@pytest.mark.django_db(transaction=True)
async def test_a_closed_socket_leaves_no_consumer_or_outbox_to_the_collector(llm: Any) -> None:
    gc.collect()
    gc.disable()  # what is still there after the close is only what cycles keep
    try:
        members = [await connect("lonely") for _ in range(5)]
        for member in members:
            await member.close()
        del members
        kept = [o for o in gc.get_objects() if isinstance(o, (ChatConsumer, Outbox))]
        assert kept == []
    finally:
        gc.enable()
