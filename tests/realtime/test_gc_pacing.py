"""A worker's full collections run at quiet moments it chooses (chat.gc_pacing): when one is
due, that a due one collects, that CPython's own are made rare, and that the runtime's warm-up
loads the LLM client before it freezes what is loaded and paces collections from then on."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from chat import runtime as runtime_module
from chat.gc_pacing import (
    AUTOMATIC_AFTER,
    HELD_AFTER,
    FullCollectionPacer,
    make_automatic_full_collections_rare,
)
from chat.runtime import get_runtime


def test_the_first_check_only_takes_its_reading() -> None:
    pacer = FullCollectionPacer(quiet_young=2, due_after=10)
    assert not pacer.due(young_collections=500, middle_since_full=50, now=100.0, events_delivered=0)


def test_a_full_collection_is_due_when_quiet_after_enough_middle_collections() -> None:
    pacer = FullCollectionPacer(quiet_young=2, due_after=10)
    pacer.due(young_collections=100, middle_since_full=0, now=100.0, events_delivered=0)
    # Busy: 300 young collections since the last check, however much is pending.
    assert not pacer.due(young_collections=400, middle_since_full=40, now=100.5, events_delivered=0)
    # Quiet (2 young collections since the last check), but too little happened since the
    # last full collection.
    assert not pacer.due(young_collections=402, middle_since_full=9, now=101.0, events_delivered=0)
    # Quiet, and as much happened as CPython waits for.
    assert pacer.due(young_collections=404, middle_since_full=10, now=101.5, events_delivered=0)
    # Busy again.
    assert not pacer.due(young_collections=420, middle_since_full=12, now=102.0, events_delivered=0)


def test_no_full_collection_is_due_while_room_events_are_delivered() -> None:
    """A fan-out streams to 200 members making few objects: the events tell it is busy."""
    pacer = FullCollectionPacer(quiet_young=2, due_after=10)
    pacer.due(young_collections=0, middle_since_full=10, now=100.0, events_delivered=500)
    assert not pacer.due(young_collections=1, middle_since_full=10, now=100.5, events_delivered=525)
    assert pacer.due(young_collections=2, middle_since_full=10, now=101.0, events_delivered=525)


def test_the_next_paced_collection_waits_spacing_times_the_pause_of_the_previous() -> None:
    pacer = FullCollectionPacer(quiet_young=2, due_after=10, spacing=50)
    pacer.due(young_collections=0, middle_since_full=0, now=100.0, events_delivered=0)
    assert pacer.due(young_collections=0, middle_since_full=10, now=100.5, events_delivered=0)
    # It took 0.2 s (a big live set): nothing paced for the next 10 s, however quiet.
    pacer.collected(pause=0.2, now=100.7, young_collections=0)
    assert not pacer.due(young_collections=0, middle_since_full=10, now=101.2, events_delivered=0)
    assert not pacer.due(young_collections=0, middle_since_full=30, now=110.6, events_delivered=0)
    assert pacer.due(young_collections=0, middle_since_full=30, now=110.8, events_delivered=0)


def test_a_join_storm_holds_the_automatic_full_collection_until_it_ends() -> None:
    pacer = FullCollectionPacer(storm_joins=100, storm_hold=30.0)
    assert not pacer.hold(joins=5000, now=100.0)  # the first reading: 5,000 joins ever
    assert pacer.hold(joins=5100, now=100.5)  # 100 since the previous check: a storm
    assert pacer.hold(joins=5900, now=101.0)
    assert not pacer.hold(joins=5950, now=101.5)  # 50: the storm is over
    assert not pacer.hold(joins=5960, now=102.0)
    assert pacer.hold(joins=6060, now=102.5)  # another


def test_a_storm_holds_it_for_storm_hold_seconds_at_most() -> None:
    """What waits for the full collection (garbage in cycles) is bounded in time."""
    pacer = FullCollectionPacer(storm_joins=100, storm_hold=30.0)
    pacer.hold(joins=0, now=100.0)
    joins = 0
    for tick in range(1, 61):
        joins += 500
        assert pacer.hold(joins=joins, now=100.0 + tick * 0.5) == (tick * 0.5 < 30.5)
    # Still storming past the bound: not held again until a check sees the storm end.
    assert not pacer.hold(joins=joins + 500, now=131.0)
    assert not pacer.hold(joins=joins + 510, now=131.5)
    assert pacer.hold(joins=joins + 610, now=132.0)


def test_a_step_in_a_storm_holds_cpythons_trigger_and_the_end_of_it_restores_it() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, AUTOMATIC_AFTER)
        pacer = FullCollectionPacer(storm_joins=100)
        pacer.step(events_delivered=0, joins=0)
        pacer.step(events_delivered=0, joins=300)
        assert gc.get_threshold() == (700, 10, HELD_AFTER)
        pacer.step(events_delivered=0, joins=301)
        assert gc.get_threshold() == (700, 10, AUTOMATIC_AFTER)
    finally:
        gc.set_threshold(*before)


@pytest.fixture
def collector_off() -> Iterator[None]:
    """Only the test's own collections: none of the youngest generation's own turns."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("collector_off")
def test_a_due_step_collects_the_garbage_of_the_oldest_generation() -> None:
    class Node:
        other: Any = None

    nodes = []
    for _ in range(1000):
        a, b = Node(), Node()
        a.other, b.other = b, a
        nodes.append(a)
    for _ in range(10):
        gc.collect(1)  # the cycles, alive, move to the oldest generation; 10 middle collections
    assert gc.get_count()[2] == 10
    del nodes, a, b  # now garbage only a full collection finds
    pacer = FullCollectionPacer(quiet_young=2, due_after=10)
    assert pacer.step(events_delivered=0) is None  # the first reading
    done = pacer.step(events_delivered=0)
    assert done is not None
    assert done.collected >= 2000
    assert gc.get_count()[2] == 0
    assert pacer.step(events_delivered=0) is None  # nothing due right after


@pytest.mark.usefixtures("collector_off")
def test_no_step_collects_before_enough_middle_collections() -> None:
    pacer = FullCollectionPacer(quiet_young=2, due_after=10)
    pacer.step(events_delivered=0)
    for _ in range(3):
        gc.collect(1)
    assert pacer.step(events_delivered=0) is None
    assert gc.get_count()[2] == 3


def test_automatic_full_collections_are_made_rare_and_the_young_thresholds_kept() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        make_automatic_full_collections_rare()
        assert gc.get_threshold() == (700, 10, AUTOMATIC_AFTER)
    finally:
        gc.set_threshold(*before)


@pytest.mark.django_db(transaction=True)
async def test_the_warm_up_makes_the_llm_client_before_it_freezes(
    llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[str] = []
    monkeypatch.setattr(runtime_module, "warm_up_provider", lambda: done.append("llm client"))
    monkeypatch.setattr(runtime_module, "freeze_loaded_objects", lambda: done.append("freeze"))
    runtime = await get_runtime()
    await runtime._warm_up()
    assert done[-2:] == ["llm client", "freeze"]


@pytest.mark.django_db(transaction=True)
async def test_the_runtime_checks_for_a_quiet_full_collection_while_it_runs(
    llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "CHECK_SECONDS", 0.01)
    checked = asyncio.Event()

    class Counting(FullCollectionPacer):
        def step(self, events_delivered: int, joins: int = 0) -> None:
            checked.set()

    monkeypatch.setattr(runtime_module, "FullCollectionPacer", Counting)
    await get_runtime()
    await asyncio.wait_for(checked.wait(), 10)
