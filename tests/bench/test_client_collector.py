"""The benchmark clients keep the garbage collector's full collections out of what they time."""

from __future__ import annotations

import gc

from bench.streams import no_full_collections


def test_no_full_collection_runs_while_measuring_and_the_collector_is_restored_after() -> None:
    thresholds = gc.get_threshold()
    full: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    kept = []
    with no_full_collections():
        assert gc.get_freeze_count() > 0  # what existed before is out of every collection
        gc.callbacks.append(record)
        try:
            # Enough surviving containers for several automatic full collections.
            for index in range(300_000):
                kept.append([index])
        finally:
            gc.callbacks.remove(record)
    assert full == []
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0
