"""The per-process worker: builds the room log, coordinator, hub and answer runner chosen by
settings, and runs the background loops (control channel, leases, orphan reaper, repair of
stored ends)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import Error as DatabaseError

from chat import storage
from chat.answers.assistant import Assistant
from chat.answers.runner import AnswerRunner
from chat.background import start_detached
from chat.llm import get_provider
from chat.protocol import dumps, presence_frame
from chat.ratelimit import BucketRegistry
from chat.realtime.coordination import Coordinator, MemoryCoordinator
from chat.realtime.hub import RoomHub
from chat.realtime.log import RoomLog, RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.realtime.redis_coordination import RedisCoordinator
from chat.retrieval import get_retriever

logger = logging.getLogger(__name__)

REAP_SECONDS = 1.0
# Slower than the reaper: each pass asks the database, and what it repairs is rare (an end the
# room saw while the database was away, left unstored by a worker that died or gave up).
REPAIR_SECONDS = 10.0
PRESENCE_DEBOUNCE = 0.1


def _new_worker_id() -> str:
    """Host and pid first, so that operators (and tests) can tell which process a worker id,
    an answer's owner or a control channel belongs to; a random tail keeps it unique."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:24] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def room_group(room: str) -> str:
    return f"room.{room}"


class Worker:
    """Everything one daphne process shares between its connections."""

    def __init__(self) -> None:
        self.worker_id = _new_worker_id()
        self.log, self.coordinator = _build_backends(self.worker_id)
        if isinstance(self.coordinator, RedisCoordinator):
            # Redis lost its data (restarted): our channel-layer groups went with it.
            self.coordinator.on_data_loss = self._rejoin_groups
        self.hub = RoomHub(self.log)
        self.layer: Any = get_channel_layer()
        self.control_channel = ""
        self.runner: AnswerRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Rooms whose channel-layer group we are in, with when a member last joined one here.
        self._groups: dict[str, float] = {}
        self._presence_pending: set[str] = set()
        self._assistants: dict[str, Assistant] = {}
        # Asks per person per minute, shared by all of a person's connections to this worker.
        self.ask_buckets = BucketRegistry(
            settings.CHAT_ASK_RATE_PER_MINUTE / 60.0, settings.CHAT_ASK_BURST
        )

    async def start(self) -> None:
        self.control_channel = await self.layer.new_channel(prefix=f"worker.{self.worker_id}")
        self.runner = AnswerRunner(
            log=self.log,
            coordinator=self.coordinator,
            assistant_for_room=self.assistant_for_room,
            control_channel=self.control_channel,
        )
        loops = (
            self._control_loop,
            self._lease_loop,
            self._reap_loop,
            self._repair_loop,
            self._group_loop,
        )
        for loop in loops:
            self._tasks.append(start_detached(loop(), name=loop.__name__))
        self._tasks.append(start_detached(self._warm_up(), name="warm_up"))

    async def _warm_up(self) -> None:
        """Open Chroma and load the embedding model now, in the background, so the first
        question does not pay for it."""
        try:
            await get_retriever().retrieve("warm up", collection=settings.CHAT_COLLECTION, k=1)
        except Exception as err:
            logger.warning("Knowledge base warm-up failed (answers will retry): %s", err)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Close the LLM clients this worker used: their HTTP pools belong to this event loop.
        for llm in {id(a.llm): a.llm for a in self._assistants.values()}.values():
            aclose = getattr(llm, "aclose", None)
            if aclose is not None:
                await aclose()
        await self.log.close()
        await self.coordinator.close()

    @property
    def answers(self) -> AnswerRunner:
        """The answer runner (exists once `start()` ran, which `get_worker()` guarantees)."""
        if self.runner is None:
            raise RuntimeError("the worker is not started")
        return self.runner

    async def assistant_for_room(self, room: str) -> Assistant:
        assistant = self._assistants.get(room)
        if assistant is None:
            row = await database_sync_to_async(storage.get_room)(room)
            assistant = Assistant(
                llm=get_provider(),
                retriever=get_retriever(),
                collection=row.collection or settings.CHAT_COLLECTION,
                k=settings.CHAT_RETRIEVAL_K,
                system_prompt=settings.CHAT_SYSTEM_PROMPT,
            )
            self._assistants[room] = assistant
        return assistant

    # --- presence ---------------------------------------------------------------------------

    async def watch_room(self, room: str) -> None:
        """Receive this room's presence changes on our control channel (called on every join:
        a group lost with Redis' data is joined again by the next member)."""
        self._groups[room] = time.monotonic()
        await self.layer.group_add(room_group(room), self.control_channel)

    async def presence_changed(self, room: str) -> None:
        await self.layer.group_send(room_group(room), {"type": "presence.changed", "room": room})

    def _schedule_presence(self, room: str) -> None:
        """Coalesce presence changes: one `presence` frame per room per PRESENCE_DEBOUNCE at
        most. Measured: 200 members joining at once sent each member ~190 frames, enough to
        delay an answer's deltas behind them by a second (docs/benchmarks.md)."""
        if room in self._presence_pending:
            return
        self._presence_pending.add(room)

        async def push_later() -> None:
            await asyncio.sleep(PRESENCE_DEBOUNCE)
            self._presence_pending.discard(room)
            await self._push_presence(room)

        task = start_detached(push_later(), name=f"presence {room}")
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("Presence update failed: %r", task.exception())

    async def _push_presence(self, room: str) -> None:
        # No leaving the group here: members may be between a close and their resume. Groups of
        # rooms nobody here uses any more are left by `_refresh_groups`.
        conns = self.hub.connections(room)
        if not conns:
            return
        frame = dumps(presence_frame(await self.coordinator.members(room)))
        for conn in conns:
            conn.push(frame)

    # --- background loops -------------------------------------------------------------------

    async def _control_loop(self) -> None:
        failing = False
        while True:
            try:
                message = await self.layer.receive(self.control_channel)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                # One traceback per outage, not one a second while Redis is away.
                if not failing:
                    logger.exception("Control channel receive failed; retrying every second")
                else:
                    logger.debug("Control channel still failing: %r", err)
                failing = True
                await asyncio.sleep(1.0)
                continue
            if failing:
                logger.warning("Control channel receiving again")
                failing = False
            kind = message.get("type")
            try:
                if kind == "answer.cancel" and self.runner is not None:
                    self.runner.cancel_local(str(message.get("answer_id")))
                elif kind == "presence.changed":
                    self._schedule_presence(str(message.get("room")))
            except Exception:
                logger.exception("Control message %r failed", kind)

    async def _lease_loop(self) -> None:
        interval = settings.CHAT_LEASE_SECONDS / 3
        while True:
            await asyncio.sleep(interval)
            if self.runner is None:
                continue
            try:
                await self.coordinator.refresh(
                    self.runner.running_ids(), lease_seconds=settings.CHAT_LEASE_SECONDS
                )
            except Exception:
                logger.exception("Could not refresh answer leases")

    async def _reap_loop(self) -> None:
        """End answers whose worker died (lease expired) in the rooms we serve."""
        while True:
            await asyncio.sleep(REAP_SECONDS)
            if self.runner is None:
                continue
            try:
                local = set(self.runner.running_ids())
                for room in self.hub.rooms():
                    for answer_id in await self.log.live_answers(room):
                        if answer_id in local:
                            continue
                        if await self.coordinator.owner_channel(
                            answer_id
                        ) is None and await self.runner.interrupt_orphan(room, answer_id):
                            logger.warning("Answer %s lost its worker: interrupted", answer_id)
            except Exception:
                logger.exception("Orphan reaper failed; retrying")

    async def _repair_loop(self) -> None:
        """Store the ends the room log holds for answers the database still has `streaming`,
        in the rooms we serve (`AnswerRunner.repair_ended`)."""
        failing = False
        while True:
            await asyncio.sleep(REPAIR_SECONDS)
            rooms = self.hub.rooms()
            if self.runner is None or not rooms:
                continue
            try:
                await self.runner.repair_ended(rooms)
            except Exception as err:
                # One line per outage, not one a pass; a traceback only for what is not the
                # database being away.
                if not failing and isinstance(err, DatabaseError):
                    first_line = (str(err).strip() or type(err).__name__).splitlines()[0]
                    logger.warning("Repair of stored ends: database error (%s)", first_line)
                elif not failing:
                    logger.exception("Repair of stored ends failed; retrying")
                else:
                    logger.debug("Repair of stored ends still failing: %r", err)
                failing = True
                continue
            if failing:
                logger.warning("Repair of stored ends working again")
                failing = False

    async def _group_loop(self) -> None:
        """Re-join room groups before channels_redis expires them (long-lived sockets):
        every CHAT_GROUP_REFRESH_SECONDS, well inside CHAT_GROUP_EXPIRY_SECONDS."""
        while True:
            await asyncio.sleep(settings.CHAT_GROUP_REFRESH_SECONDS)
            await self._refresh_groups()

    async def _refresh_groups(self) -> None:
        """Join our rooms' groups again; leave those of rooms nobody here has joined or used
        for a whole refresh period."""
        idle_before = time.monotonic() - settings.CHAT_GROUP_REFRESH_SECONDS
        served = set(self.hub.rooms())
        for room, watched in list(self._groups.items()):
            try:
                if room not in served and watched < idle_before:
                    del self._groups[room]
                    await self.layer.group_discard(room_group(room), self.control_channel)
                else:
                    await self.layer.group_add(room_group(room), self.control_channel)
            except Exception:
                logger.exception("Could not refresh group of room %s", room)

    async def _rejoin_groups(self) -> None:
        """After Redis lost its data: join our rooms' groups again at once (not at the next
        refresh, up to an hour away), and have every worker push fresh presence lists."""
        await self._refresh_groups()
        for room in list(self._groups):
            await self.presence_changed(room)


def _build_backends(worker_id: str) -> tuple[RoomLog, Coordinator]:
    view_size = max(settings.CHAT_HISTORY_LENGTH * 2, 100)
    if settings.REDIS_URL:
        from chat.realtime.redis_log import RedisRoomLog

        return (
            RedisRoomLog(
                settings.REDIS_URL,
                seeder=_seeder(interrupt_orphans=False),
                retention_events=settings.CHAT_LOG_RETENTION_EVENTS,
                retention_seconds=settings.CHAT_LOG_RETENTION_SECONDS,
                view_size=view_size,
            ),
            RedisCoordinator(settings.REDIS_URL, worker_id=worker_id),
        )
    return (
        MemoryRoomLog(
            seeder=_seeder(interrupt_orphans=True),
            retention_events=settings.CHAT_LOG_RETENTION_EVENTS,
            retention_seconds=settings.CHAT_LOG_RETENTION_SECONDS,
            view_size=view_size,
        ),
        MemoryCoordinator(worker_id),
    )


def _seeder(*, interrupt_orphans: bool) -> Any:
    async def seed(room: str) -> RoomSeed:
        return await database_sync_to_async(storage.seed_room)(
            room, max(settings.CHAT_HISTORY_LENGTH * 2, 100), interrupt_orphans=interrupt_orphans
        )

    return seed


_worker: Worker | None = None
_worker_loop: asyncio.AbstractEventLoop | None = None
_lock: asyncio.Lock | None = None


async def get_worker() -> Worker:
    """This process's worker, started on first use in the running event loop."""
    global _worker, _worker_loop, _lock
    loop = asyncio.get_running_loop()
    if _worker is not None and _worker_loop is loop:
        return _worker
    if _lock is None or _worker_loop is not loop:
        _lock = asyncio.Lock()
        _worker, _worker_loop = None, loop
    async with _lock:
        if _worker is None:
            worker = Worker()
            await worker.start()
            _worker = worker
    return _worker


async def reset_worker() -> None:
    """Stop and forget the worker (tests: each test has its own event loop)."""
    global _worker, _worker_loop, _lock
    worker, _worker, _worker_loop, _lock = _worker, None, None, None
    if worker is not None:
        await worker.stop()
