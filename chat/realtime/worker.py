"""The per-process worker: builds the room log, coordinator, hub and answer runner chosen by
settings, and runs the background loops (control channel, leases, orphan reaper)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import storage
from chat.answers.assistant import Assistant
from chat.answers.runner import AnswerRunner
from chat.llm import get_provider
from chat.protocol import dumps, presence_frame
from chat.ratelimit import BucketRegistry
from chat.realtime.coordination import Coordinator, MemoryCoordinator
from chat.realtime.hub import RoomHub
from chat.realtime.log import RoomLog, RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.retrieval import get_retriever

logger = logging.getLogger(__name__)

GROUP_REFRESH_SECONDS = 3600.0  # well inside channels_redis' group_expiry (a day)
REAP_SECONDS = 1.0


def room_group(room: str) -> str:
    return f"room.{room}"


class Worker:
    """Everything one daphne process shares between its connections."""

    def __init__(self) -> None:
        self.worker_id = secrets.token_hex(6)
        self.log, self.coordinator = _build_backends(self.worker_id)
        self.hub = RoomHub(self.log)
        self.layer: Any = get_channel_layer()
        self.control_channel = ""
        self.runner: AnswerRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._groups: set[str] = set()
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
        for loop in (self._control_loop, self._lease_loop, self._reap_loop, self._group_loop):
            self._tasks.append(asyncio.create_task(loop(), name=loop.__name__))

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
        """Receive this room's presence changes on our control channel."""
        if room not in self._groups:
            self._groups.add(room)
            await self.layer.group_add(room_group(room), self.control_channel)

    async def presence_changed(self, room: str) -> None:
        await self.layer.group_send(room_group(room), {"type": "presence.changed", "room": room})

    async def _push_presence(self, room: str) -> None:
        conns = self.hub.connections(room)
        if not conns:
            if room in self._groups:
                self._groups.discard(room)
                await self.layer.group_discard(room_group(room), self.control_channel)
            return
        frame = dumps(presence_frame(await self.coordinator.members(room)))
        for conn in conns:
            conn.push(frame)

    # --- background loops -------------------------------------------------------------------

    async def _control_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.control_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Control channel receive failed; retrying")
                await asyncio.sleep(1.0)
                continue
            kind = message.get("type")
            try:
                if kind == "answer.cancel" and self.runner is not None:
                    self.runner.cancel_local(str(message.get("answer_id")))
                elif kind == "presence.changed":
                    await self._push_presence(str(message.get("room")))
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

    async def _group_loop(self) -> None:
        """Re-join room groups before channels_redis expires them (long-lived sockets)."""
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            for room in list(self._groups):
                try:
                    await self.layer.group_add(room_group(room), self.control_channel)
                except Exception:
                    logger.exception("Could not refresh group of room %s", room)


def _build_backends(worker_id: str) -> tuple[RoomLog, Coordinator]:
    view_size = max(settings.CHAT_HISTORY_LENGTH * 2, 100)
    if settings.REDIS_URL:
        from chat.realtime.redis_coordination import RedisCoordinator
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
