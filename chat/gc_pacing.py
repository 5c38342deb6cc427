"""When a worker's full garbage collections run: at quiet moments it chooses, not mid-stream.

Measured (docs/benchmarks.md, "Fan-out, and the p99 at 100 answers"): CPython's full (oldest
generation) collection stops the event loop for as long as it takes to scan every object the
collector tracks and has not frozen, about a millisecond per thousand. What is alive while 100
answers stream (their tasks, coroutines, HTTP streams and connections) is tens of thousands of
objects, so each full collection during the answers delayed every delta then in flight by tens
of milliseconds: the p99 of the deltas.

CPython starts a full collection once the middle generation was collected 10 times since the
last one and the objects promoted since are a quarter of those that survived it. Raising that
10 makes full collections rarer, not shorter; so the worker takes them itself when it is
quiet, and CPython's own trigger (`AUTOMATIC_AFTER` middle collections) is left as the bound:

- Every `CHECK_SECONDS` the pacer looks at two counters the collector keeps anyway and at the
  room events the worker delivered. The worker is quiet when it delivered none since the last
  check (no delta in flight here: a fan-out's 200 members make few objects, 1 or 2 young
  collections a second) and its youngest generation was collected at most `QUIET_YOUNG` times
  (it made few objects: joins, for one, deliver no room event; measured: 9 to 32 young
  collections a second while 100 answers streamed, none for seconds on an idle worker).
- A full collection is due once the middle generation was collected `DUE_AFTER` times since
  the last full one (CPython's own default: as often as CPython would consider one).
- CPython also waits for what was promoted since the last full collection to be a quarter of
  what survived it, so a big live set (5,000 idle sockets) is not scanned over and over. The
  pacer bounds its collections by time instead of counting objects (counting them is itself a
  scan): after a full collection of d seconds, the next paced one waits at least `SPACING`
  times d, so at most 1/`SPACING` of the worker's time goes to them.
- A worker never quiet (always streaming) still gets CPython's automatic full collection after
  `AUTOMATIC_AFTER` middle collections, 10 times rarer than the default: garbage in reference
  cycles waits longer but not without bound (at most that many middle collections, each after
  about 7,000 objects more were made than freed), so memory stays bounded.
- Except in a join storm (`STORM_JOINS` joins or more since the previous check: a worker taking
  over another's members): each join keeps its socket's objects, so the storm reaches that
  bound within seconds, and the automatic collection then scans every member already back:
  0.39 to 0.46 s in the middle of the storms measured (docs/benchmarks.md, "Reconnect
  storm"). During a storm it is held, for `STORM_HOLD_SECONDS` at most (the bound on what
  waits), and the pacer takes it at the first quiet moment after.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

CHECK_SECONDS = 0.5
QUIET_YOUNG = 2
DUE_AFTER = 10
AUTOMATIC_AFTER = 100
SPACING = 50
STORM_JOINS = 100
STORM_HOLD_SECONDS = 30.0
# CPython's trigger while held: more middle collections than a storm makes.
HELD_AFTER = 1_000_000


@dataclass(frozen=True, slots=True)
class FullCollection:
    """What one paced full collection did: objects collected and the pause it took."""

    collected: int
    seconds: float


class FullCollectionPacer:
    """Decides when a full collection runs, from the collector's counters (young collections
    ever, middle collections since the last full one) and the pause of the previous one."""

    def __init__(
        self,
        *,
        quiet_young: int = QUIET_YOUNG,
        due_after: int = DUE_AFTER,
        spacing: float = SPACING,
        storm_joins: int = STORM_JOINS,
        storm_hold: float = STORM_HOLD_SECONDS,
    ) -> None:
        self._quiet_young = quiet_young
        self._due_after = due_after
        self._spacing = spacing
        self._young_at_check: int | None = None
        self._events_at_check = 0
        # When the previous paced collection ended, and when the next may start.
        self._not_before = 0.0
        self._storm_joins = storm_joins
        self._storm_hold = storm_hold
        self._joins_at_check: int | None = None
        # When the current hold of CPython's automatic full collection began (None: not held),
        # and the threshold it replaced.
        self._held_since: float | None = None
        self._held_threshold = AUTOMATIC_AFTER

    def due(
        self, young_collections: int, middle_since_full: int, now: float, events_delivered: int
    ) -> bool:
        """Asked once per check: True when the middle generation was collected `due_after`
        times since the last full collection, since the previous check no room event was
        delivered and the young generation was collected at most `quiet_young` times (the
        first check only takes its readings), and the previous paced collection is `spacing`
        times its pause ago."""
        young_before, events_before = self._young_at_check, self._events_at_check
        self._young_at_check, self._events_at_check = young_collections, events_delivered
        if young_before is None or now < self._not_before:
            return False
        return (
            middle_since_full >= self._due_after
            and young_collections - young_before <= self._quiet_young
            and events_delivered == events_before
        )

    def hold(self, joins: int, now: float) -> bool:
        """Asked once per check, given the joins here ever: whether CPython's automatic full
        collection is to be held now. From a check that saw `storm_joins` joins or more since
        the previous one (the first check only takes its reading), until a check that saw
        fewer, or `storm_hold` seconds after the hold began, whichever is first; the next hold
        needs a storm that starts after that."""
        before, self._joins_at_check = self._joins_at_check, joins
        storm = before is not None and joins - before >= self._storm_joins
        if not storm:
            self._held_since = None
            return False
        if self._held_since is None:
            self._held_since = now
        # A storm that lasts past the bound keeps `_held_since`: no new hold until it ends.
        return now - self._held_since < self._storm_hold

    def collected(self, pause: float, now: float, young_collections: int) -> None:
        """A paced collection of `pause` seconds ended at `now`: the next waits for
        `spacing` times that; the collection itself counts as no young one."""
        self._not_before = now + self._spacing * pause
        self._young_at_check = young_collections

    def step(self, events_delivered: int, joins: int = 0) -> FullCollection | None:
        """One check, given the room events delivered and the joins here ever: CPython's
        automatic full collection held or let go (`hold`), and a full collection now if one is
        due (the event loop stops for it)."""
        started = time.monotonic()
        self._apply_hold(self.hold(joins, started))
        young = gc.get_stats()[0]["collections"]
        if not self.due(young, gc.get_count()[2], started, events_delivered):
            return None
        collected = gc.collect()
        ended = time.monotonic()
        result = FullCollection(collected=collected, seconds=ended - started)
        self.collected(result.seconds, ended, gc.get_stats()[0]["collections"])
        logger.debug(
            "Full collection while quiet: %d objects collected in %.1f ms",
            result.collected,
            result.seconds * 1000,
        )
        return result

    def _apply_hold(self, hold: bool) -> None:
        young, middle, old = gc.get_threshold()
        if hold and old != HELD_AFTER:
            self._held_threshold = old
            gc.set_threshold(young, middle, HELD_AFTER)
            logger.debug("Join storm: CPython's automatic full collection held")
        elif not hold and old == HELD_AFTER:
            gc.set_threshold(young, middle, self._held_threshold)
            logger.debug("Join storm over: CPython's automatic full collection let go")


def make_automatic_full_collections_rare() -> None:
    """CPython's own full collection after `AUTOMATIC_AFTER` middle collections instead of 10
    (the young and middle thresholds stay as they are)."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, AUTOMATIC_AFTER)
