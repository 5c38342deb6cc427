"""The runtime: what one worker process (one daphne) shares between its connections, built from
settings, and its life: start, the periodic work of its services, stop.

It wires the parts and owns their background loops; the work itself is theirs: presence
(`chat.realtime.presence`), members (`chat.realtime.membership`), answers
(`chat.answers.admission`, `chat.answers.runner`). Every transport reaches them through
`get_runtime()`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import Error as DatabaseError

from chat import protocol, storage
from chat.answers.admission import Admission
from chat.answers.assistants import assistant_for
from chat.answers.feedback import AnswerFeedback
from chat.answers.moderation import EXPEL, RECHECK, Moderation
from chat.answers.runner import AnswerRunner
from chat.background import keep_until_done, start_detached
from chat.gc_pacing import CHECK_SECONDS, FullCollectionPacer, make_automatic_full_collections_rare
from chat.llm import aclose_provider, warm_up_provider
from chat.observability import context
from chat.ratelimit import OpenPerKey
from chat.realtime.backends import build_backends
from chat.realtime.entry import EntryChecks
from chat.realtime.hub import RoomHub
from chat.realtime.membership import Membership
from chat.realtime.presence import Presence
from chat.realtime.typing import NOTICE as TYPING_NOTICE
from chat.realtime.typing import Typing
from chat.reclaim import Reclaimer
from chat.retrieval import get_retriever

logger = logging.getLogger(__name__)

REAP_SECONDS = 0.5
# The reaper looks twice a second at the rooms with an event (or a first member here) in this
# long, and at all of them less often (chat.answers.runner.REAP_ALL_SECONDS).
REAP_LATELY_SECONDS = 30.0
# After a failed lease refresh (Redis away), try again this soon: an owner re-takes its
# expired leases within this of Redis coming back, before any reaper confirms them lost.
REFRESH_RETRY_SECONDS = 0.1
# Slower than the reaper: each pass asks the database, and what it repairs is rare (an end the
# room saw while the database was away, left unstored by a worker that died or gave up).
REPAIR_SECONDS = 10.0
IDLE_SWEEP_SECONDS = 10.0


def new_worker_id() -> str:
    """Host and pid first, so that operators (and tests) can tell which process a worker id,
    an answer's owner or a control channel belongs to; a random tail keeps it unique."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:24] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class Runtime:
    """This worker's services. Built complete (nothing is None once constructed); `start()`
    gives it its control channel and starts its loops, `stop()` ends them."""

    def __init__(self) -> None:
        self.worker_id = new_worker_id()
        # Log lines say which worker wrote them (the same id as its answers' owner key).
        context.set_worker(self.worker_id)
        self.log, self.coordinator = build_backends(self.worker_id)
        self.layer: Any = get_channel_layer()
        self.hub = RoomHub(self.log)
        self.presence = Presence(coordinator=self.coordinator, hub=self.hub, layer=self.layer)
        self.typing = Typing(hub=self.hub, layer=self.layer)
        self.membership = Membership(
            hub=self.hub, coordinator=self.coordinator, presence=self.presence
        )
        self.runner = AnswerRunner(
            log=self.log,
            coordinator=self.coordinator,
            assistant_for=assistant_for,
            channel_layer=self.layer,
        )
        self.admission = Admission(
            runner=self.runner,
            coordinator=self.coordinator,
            log=self.log,
            room_is_empty=self.hub.is_empty,
        )
        self.moderation = Moderation(log=self.log, runner=self.runner, layer=self.layer)
        self.feedback = AnswerFeedback(log=self.log)
        # Connects' identity and access checks, batched (one database trip per burst).
        self.entry = EntryChecks()
        # Guests' open WebSockets per client address, on this worker.
        self.guest_connections = OpenPerKey(settings.CHAT_MAX_CONNECTIONS_PER_ADDRESS)
        if hasattr(self.coordinator, "on_data_loss"):
            # Redis lost its data (restarted): our channel-layer groups went with it.
            self.coordinator.on_data_loss = self.presence.rejoin_groups
        if hasattr(self.coordinator, "on_presence_healed"):
            # Members who left while Redis was away are gone from the list only now.
            self.coordinator.on_presence_healed = self._presence_healed
        self.reclaimer = Reclaimer(settings.CHAT_MEMORY_RECLAIM_AFTER_CLOSES)
        self.pacer = FullCollectionPacer()
        self._tasks: list[asyncio.Task[None]] = []
        self._rechecks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        channel = await self.layer.new_channel(prefix=f"worker.{self.worker_id}")
        self.presence.control_channel = self.runner.control_channel = channel
        self.typing.control_channel = channel
        loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("control channel", self._control_loop),
            (
                "answer leases",
                self._every(
                    settings.CHAT_LEASE_SECONDS / 3,
                    self._refresh_leases,
                    retry_after=REFRESH_RETRY_SECONDS,
                ),
            ),
            ("orphan reaper", self._every(REAP_SECONDS, self._reap)),
            ("repair of stored ends", self._every(REPAIR_SECONDS, self._repair)),
            ("room groups", self.presence.run_group_refresh),
            ("idle rooms", self._every(IDLE_SWEEP_SECONDS, self._forget_idle_rooms)),
            ("full collections", self._every(CHECK_SECONDS, self._collect_when_quiet)),
            ("warm-up", self._warm_up),
        ]
        for name, loop in loops:
            self._tasks.append(start_detached(loop(), name=name))

    async def stop(self) -> None:
        await self.runner.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.presence.stop()
        # The LLM client's HTTP pool belongs to this event loop.
        await aclose_provider()
        await self.log.close()
        await self.coordinator.close()

    async def _presence_healed(self, rooms: set[str]) -> None:
        for room in rooms:
            await self.presence.changed(room)

    async def room_updated(self, room: str, info: dict[str, Any]) -> int | None:
        """Tell the room's members, on every worker, that its settings changed: a
        `room.updated` event in its log (answers need nothing: they read the settings with
        each question). Its seq is recorded, as a question's is. Then every worker closes the
        connections of people the room no longer admits (made private, or closed to guests)."""
        seq = await self.log.append(room, protocol.room_updated_event(room=info))
        if seq is not None:
            await database_sync_to_async(storage.touch_room)(room, seq)
        await self.moderation.access_changed(room)
        return seq

    async def _warm_up(self) -> None:
        """Open Chroma, load the embedding model and make the LLM client now, in the
        background, so the first question does not pay for them; then freeze what is loaded."""
        try:
            await get_retriever().retrieve("warm up", collection=settings.CHAT_COLLECTION, k=1)
        except Exception as err:
            logger.warning("Knowledge base warm-up failed (answers will retry): %s", err)
        try:
            warm_up_provider()
        except Exception as err:
            logger.warning("LLM client warm-up failed (answers will retry): %s", err)
        freeze_loaded_objects()

    async def _control_loop(self) -> None:
        """Messages to this worker: cancel an answer it runs; a room's presence changed;
        someone was removed from a room, or lost access to it; someone is typing."""
        failing = False
        while True:
            try:
                message = await self.layer.receive(self.runner.control_channel)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                failing = _log_failure("Control channel receive", err, failing)
                await asyncio.sleep(1.0)
                continue
            if failing:
                logger.warning("Control channel receiving again")
                failing = False
            kind = message.get("type")
            try:
                if kind == "answer.cancel":
                    self.runner.cancel_local(str(message.get("answer_id")))
                elif kind == "presence.changed":
                    self.presence.schedule_push(str(message.get("room")))
                elif kind == EXPEL:
                    self.membership.expel(str(message.get("room")), str(message.get("user_id")))
                elif kind == RECHECK:
                    room = str(message.get("room"))
                    keep_until_done(
                        self._rechecks,
                        start_detached(self.membership.recheck(room), name=f"recheck {room}"),
                        what=f"Access check of {room}",
                    )
                elif kind == TYPING_NOTICE:
                    self.typing.deliver(message)
            except Exception:
                logger.exception("Control message %r failed", kind)

    def _every(
        self,
        seconds: float,
        step: Callable[[], Awaitable[object]],
        *,
        retry_after: float | None = None,
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """A loop running `step` every `seconds` (every `retry_after` while it fails, if
        given), logging one line per outage, not one a pass (a traceback only for what is not
        Redis or the database being away)."""

        async def loop() -> None:
            failing = False
            what = step.__name__.strip("_").replace("_", " ")
            while True:
                await asyncio.sleep(retry_after if failing and retry_after else seconds)
                try:
                    await step()
                except Exception as err:
                    failing = _log_failure(what.capitalize(), err, failing)
                    continue
                if failing:
                    logger.warning("%s working again", what.capitalize())
                    failing = False

        return loop

    async def _refresh_leases(self) -> None:
        await self.coordinator.refresh(
            self.runner.running_ids(), lease_seconds=settings.CHAT_LEASE_SECONDS
        )

    async def _reap(self) -> None:
        # Lately: long enough for a lease to expire after a room's last event, and more.
        lately = time.monotonic() - max(REAP_LATELY_SECONDS, 3 * settings.CHAT_LEASE_SECONDS)
        await self.runner.reap_orphans(self.hub.rooms(), lately=self.hub.rooms_active_since(lately))

    async def _forget_idle_rooms(self) -> None:
        """What this worker holds of rooms nobody here has used for a while goes: the log's
        state and the presence groups (the hub forgets a room when its last member leaves).
        Once a crowd has gone, the memory it took goes back to the system (chat.reclaim)."""
        grace = settings.CHAT_ROOM_STATE_GRACE_SECONDS
        self.log.forget_idle(grace)
        await self.presence.leave_idle_groups(grace)
        if self.reclaimer.due(self.hub.left_total, self.hub.connected):
            # A pause of the event loop (tens of ms once the crowd's objects are garbage).
            self.reclaimer.reclaim(self.hub.left_total)

    async def _collect_when_quiet(self) -> None:
        """The collector's full collection, at a quiet moment (chat.gc_pacing)."""
        self.pacer.step(self.hub.events_delivered, self.hub.joins_total)

    async def _repair(self) -> None:
        rooms = self.hub.rooms()
        if rooms:
            await self.runner.repair_ended(rooms)


def _log_failure(what: str, err: Exception, failing: bool) -> bool:
    """Log the first failure of an outage (a traceback unless the database or Redis is just
    away), the rest at DEBUG; returns True (now failing)."""
    from redis.exceptions import RedisError

    if failing:
        logger.debug("%s still failing: %r", what, err)
    elif isinstance(err, DatabaseError | RedisError | OSError):
        first_line = (str(err).strip() or type(err).__name__).splitlines()[0]
        logger.warning("%s failed (%s); retrying", what, first_line)
    else:
        logger.exception("%s failed; retrying", what)
    return True


_runtime: Runtime | None = None
_runtime_loop: asyncio.AbstractEventLoop | None = None
_lock: asyncio.Lock | None = None


_frozen = False


def freeze_loaded_objects() -> None:
    """Once per process, after the warm-up: what the worker loaded to serve (Django, Chroma,
    the embedding model) lives as long as it, so it goes out of the garbage collector's sight
    (`gc.freeze`). A full collection, which a burst of joins or answers triggers, then scans
    only what was made since instead of pausing the event loop over everything: measured
    here, 97 to 116 ms over Django and its libraries alone, under 1 ms after the freeze
    (docs/architecture.md). Collected first, so no garbage is kept for good. From then on the
    worker takes full collections at quiet moments, CPython's own ones made rare
    (chat.gc_pacing)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
        make_automatic_full_collections_rare()


async def get_runtime() -> Runtime:
    """This process's runtime, started on first use in the running event loop."""
    global _runtime, _runtime_loop, _lock
    loop = asyncio.get_running_loop()
    if _runtime is not None and _runtime_loop is loop:
        return _runtime
    if _lock is None or _runtime_loop is not loop:
        _lock = asyncio.Lock()
        _runtime, _runtime_loop = None, loop
    async with _lock:
        if _runtime is None:
            runtime = Runtime()
            await runtime.start()
            _runtime = runtime
    return _runtime


async def reset_runtime() -> None:
    """Stop and forget the runtime (tests: each test has its own event loop)."""
    global _runtime, _runtime_loop, _lock
    runtime, _runtime, _runtime_loop, _lock = _runtime, None, None, None
    if runtime is not None:
        await runtime.stop()
