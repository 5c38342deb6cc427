"""The room log and coordinator this worker uses, chosen by settings: Redis when `REDIS_URL`
is set (several workers), else in this process (one worker)."""

from __future__ import annotations

from datetime import datetime

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from chat import storage
from chat.realtime.coordination import Coordinator, MemoryCoordinator
from chat.realtime.log import RoomLog, RoomLogUnavailable, RoomSeed, RoomSeeder
from chat.realtime.memory import MemoryRoomLog


def build_backends(worker_id: str) -> tuple[RoomLog, Coordinator]:
    view_size = _view_size()
    if settings.REDIS_URL:
        from chat.realtime.redis_coordination import RedisCoordinator
        from chat.realtime.redis_log import RedisRoomLog

        return (
            RedisRoomLog(
                settings.REDIS_URL,
                seeder=_seeder(orphans_before=None),
                retention_events=settings.CHAT_LOG_RETENTION_EVENTS,
                retention_seconds=settings.CHAT_LOG_RETENTION_SECONDS,
                view_size=view_size,
            ),
            RedisCoordinator(settings.REDIS_URL, worker_id=worker_id),
        )
    return (
        MemoryRoomLog(
            seeder=_seeder(orphans_before=timezone.now()),
            retention_events=settings.CHAT_LOG_RETENTION_EVENTS,
            retention_seconds=settings.CHAT_LOG_RETENTION_SECONDS,
            view_size=view_size,
        ),
        MemoryCoordinator(worker_id),
    )


def store_unavailable(err: BaseException) -> bool:
    """Whether `err` says the shared store (Redis: the room log, the coordinator, the channel
    layer) could not be reached: a failure to report in one line and to retry, not a bug."""
    if isinstance(err, (RoomLogUnavailable, ConnectionError, TimeoutError, OSError)):
        return True
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(err, RedisError)


def _view_size() -> int:
    # Twice what a welcome shows, so the view still holds a room's history after a burst.
    return max(settings.CHAT_HISTORY_LENGTH * 2, 100)


def _seeder(*, orphans_before: datetime | None) -> RoomSeeder:
    """A room log that holds nothing for a room starts from what the database stored. With
    one process, answers left `streaming` from before it started can only be a previous
    run's: interrupted."""

    async def seed(room: str) -> RoomSeed:
        stored = await database_sync_to_async(storage.seed_room)(
            room, _view_size(), orphans_before=orphans_before
        )
        return RoomSeed(last_seq=stored.last_seq, messages=stored.messages)

    return seed
