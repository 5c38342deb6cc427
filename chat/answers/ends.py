"""Ending an answer exactly once, and making the database hold the end the room saw.

Every end goes through `AnswerEnds.end`: the owner's (`complete`, `cancelled`, `failed`,
`interrupted` on shutdown), and a reaper's for an answer whose owner died. The store comes
first (a conditional update from `streaming`), then the append (the log refuses a second end),
so whichever end was stored is the one appended. Members never wait on a database that is away:
the end is appended anyway and stored in the background once the database is back; should
this worker die first, any worker serving the room repairs the row from the log (`repair`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import Error as DatabaseError
from django.utils import timezone

from chat import protocol, storage
from chat.background import start_detached
from chat.batching import MicroBatcher
from chat.dbretry import retry_write
from chat.observability import metrics
from chat.protocol import AnswerStatus
from chat.realtime.log import RoomLog, append_patiently

logger = logging.getLogger(__name__)

# Members never wait longer than this for the database before they get an answer's end: a
# database that hangs (rather than refuses) would otherwise hold every end back with it.
END_STORE_WAIT = 3.0
# The repair of ends reads a room's whole view (the log keeps a few hundred messages at most),
# and looks at answers this recent (older ones have left the view of any active room).
WHOLE_VIEW = 10_000
REPAIR_LOOKBACK = timedelta(days=1)
# Rooms per database query of the repair.
REPAIR_BATCH = 500
# The most ends one database trip stores.
END_BATCH = 32

db = database_sync_to_async


@dataclass(frozen=True, slots=True)
class FinalEnd:
    """An answer's end: what its `answer.end` says and what its row stores."""

    status: AnswerStatus
    text: str
    error: dict[str, str] | None = None
    usage: dict[str, int] | None = None
    sources: list[dict[str, Any]] | None = None  # None: the row keeps its own
    start_seq: int | None = None  # the seq of its `answer.start`, stored with the end

    def row(self) -> storage.EndRow:
        return storage.EndRow(
            status=self.status,
            text=self.text,
            sources=self.sources,
            usage=self.usage,
            error=self.error,
            seq=self.start_seq,
        )

    def event(self, answer_id: str) -> dict[str, Any]:
        return protocol.answer_end_event(
            answer_id=answer_id,
            status=self.status,
            text=self.text,
            error=self.error,
            usage=self.usage,
        )


class AnswerEnds:
    """Ends answers in rooms (see the module docstring)."""

    def __init__(self, *, log: RoomLog) -> None:
        self._log = log
        # Ends the room log holds that the database has not stored yet, being retried.
        self.storing: dict[str, asyncio.Task[None]] = {}
        # Ends arriving while a trip to the database thread is under way go together in the
        # next: a burst of answers ending at once pays a trip per batch, not two per answer.
        self._finishes: MicroBatcher[tuple[str, storage.EndRow], bool | Exception] = MicroBatcher(
            db(storage.finish_answers), max_batch=END_BATCH
        )
        self._end_seqs: MicroBatcher[tuple[str, int, str], Exception | None] = MicroBatcher(
            db(storage.set_end_seqs), max_batch=END_BATCH
        )

    async def _finish(self, answer_id: str, row: storage.EndRow) -> bool:
        """`storage.finish_answer`, batched with the ends arriving meanwhile."""
        stored = await self._finishes.submit((answer_id, row))
        if isinstance(stored, Exception):
            raise stored
        return stored

    async def _set_end_seq(self, answer_id: str, seq: int, room: str) -> None:
        """`storage.set_end_seq`, batched likewise."""
        failed = await self._end_seqs.submit((answer_id, seq, room))
        if failed is not None:
            raise failed

    async def end(self, room: str, answer_id: str, end: FinalEnd) -> tuple[bool | None, int | None]:
        """Store `end`, then append it. Returns `(stored, seq)`: `stored` is False when the
        answer had already ended (someone else stored theirs first; nothing is appended) and
        None when the database could not say; `seq` is the appended end's, or None."""
        store = asyncio.ensure_future(self._finish(answer_id, end.row()))
        stored: bool | None
        try:
            # Shielded: on a timeout the store goes on, and its outcome is awaited later.
            stored = await asyncio.wait_for(asyncio.shield(store), END_STORE_WAIT)
        except (DatabaseError, TimeoutError) as err:
            stored = None
            reason = str(err).strip() or f"no reply within {END_STORE_WAIT:.0f} s"
            logger.warning(
                "Could not store the end of answer %s (%s); the room gets it now, the "
                "database once it is back",
                answer_id,
                reason.splitlines()[0],
            )
        if stored is False:
            return False, None
        seq = await append_patiently(
            self._log, room, end.event(answer_id), within=settings.CHAT_LOG_OUTAGE_SECONDS
        )
        if seq is None:
            if stored is None:
                # Someone else's end is in the log; whoever appended it stores it (or the
                # repair does, from the log).
                logger.warning("Answer %s had already ended in the room log", answer_id)
            return stored, None
        # Counted where it is appended: once per answer, whichever worker ended it.
        metrics.answer_ended(end.status, end.error["code"] if end.error else None)
        if stored:
            try:
                await self._set_end_seq(answer_id, seq, room)
                return True, seq
            except DatabaseError as err:
                logger.warning(
                    "Could not store the end seq of answer %s (%s); retrying", answer_id, err
                )
        self._store_later(room, answer_id, end, seq, store)
        return stored, seq

    def _store_later(
        self, room: str, answer_id: str, end: FinalEnd, seq: int, first: asyncio.Future[bool]
    ) -> None:
        """Store in the background the end the log holds at `seq`: retried with backoff
        until the database is back, for CHAT_DB_RETRY_SECONDS at most."""
        task = start_detached(
            self._store_logged_end(room, answer_id, end, seq, first),
            name=f"store end {answer_id}",
        )
        self.storing[answer_id] = task
        task.add_done_callback(functools.partial(self._stored, answer_id))

    async def _store_logged_end(
        self, room: str, answer_id: str, end: FinalEnd, seq: int, first: asyncio.Future[bool]
    ) -> None:
        failing_since = time.monotonic()
        # A first try still on its way (the database hangs) holds the database thread: let it
        # finish. Its outcome does not matter: the retried write below is safe to repeat.
        with contextlib.suppress(DatabaseError):
            await first
        write = functools.partial(
            storage.store_logged_end, answer_id, end.row(), room_name=room, end_seq=seq
        )
        done, same = await retry_write(
            write,
            what=f"the end of answer {answer_id}",
            budget=settings.CHAT_DB_RETRY_SECONDS,
            failing_since=failing_since,
        )
        if done and not same:
            logger.error("Answer %s: the database holds another end than the room log", answer_id)

    def _stored(self, answer_id: str, task: asyncio.Task[None]) -> None:
        if self.storing.get(answer_id) is task:
            del self.storing[answer_id]
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            logger.error("Storing the end of answer %s failed", answer_id, exc_info=error)

    async def interrupt_orphan(
        self, room: str, answer_id: str, *, status: AnswerStatus = "interrupted"
    ) -> bool:
        """End an answer whose owner is gone (its lease expired), keeping the text the room
        saw; True if this call appended its `answer.end`."""
        error = (
            {"code": "interrupted", "message": "The server writing this answer stopped."}
            if status == "interrupted"
            else None
        )
        live = await self._log.live_answer(room, answer_id)
        if live is None:
            # No longer being written, as far as the log knows, so no end can be appended. If
            # the log holds its end (appended while the database was away), the database must
            # say the same; else it keeps the text it saved.
            if answer_id in await self._repair_from_log(room, [answer_id]):
                return False
            info = await db(storage.answer_info)(answer_id)
            text = info["text"] if info else ""
            await db(storage.finish_answer)(answer_id, storage.EndRow(status, text, error=error))
            return False
        ending = FinalEnd(status, live.get("text", ""), error)
        stored, seq = await self.end(room, answer_id, ending)
        if stored is not False:
            return seq is not None
        # The owner stored its end and died before appending it: append what it stored.
        info = await db(storage.answer_info)(answer_id)
        if info is None:
            return False
        seq = await self._log.append(
            room,
            protocol.answer_end_event(
                answer_id=answer_id,
                status=info["status"],
                text=info["text"],
                error=info.get("error"),
            ),
        )
        if seq is not None:
            metrics.answer_ended(info["status"], (info.get("error") or {}).get("code"))
            await db(storage.set_end_seq)(answer_id, seq, room)
        return seq is not None

    async def repair(self, rooms: list[str], *, busy: set[str]) -> int:
        """Store the ends the room log holds for answers the database still has `streaming`
        in these rooms: ends appended while the database was away whose worker died (or gave
        up) before it could store them. `busy`: answers this worker still runs. Returns how
        many it stored.

        Cheap: one indexed query per REPAIR_BATCH rooms; the log is read only for a room with
        such an answer that the log does not have live (live ones are the reaper's)."""
        busy = busy | set(self.storing)
        since = timezone.now() - REPAIR_LOOKBACK
        repaired = 0
        for first in range(0, len(rooms), REPAIR_BATCH):
            batch = rooms[first : first + REPAIR_BATCH]
            streaming = await db(storage.streaming_answers)(batch, since=since)
            for room, answer_ids in streaming.items():
                candidates = [a for a in answer_ids if a not in busy]
                if candidates:
                    live = set(await self._log.live_answers(room))
                    candidates = [a for a in candidates if a not in live]
                if candidates:
                    found = await self._repair_from_log(room, candidates)
                    repaired += sum(found.values())
        return repaired

    async def _repair_from_log(self, room: str, answer_ids: list[str]) -> dict[str, bool]:
        """For each of these answers that has ended in the room log's view: whether its end
        was stored now (False: the database held an end already)."""
        snapshot = await self._log.snapshot(room, WHOLE_VIEW)
        wanted = set(answer_ids)
        found: dict[str, bool] = {}
        for message in snapshot.history:
            status = message.get("status")
            if message["id"] not in wanted or status in (None, "streaming"):
                continue
            logged = storage.EndRow(
                status=status,
                text=message.get("text", ""),
                sources=message.get("sources"),
                usage=message.get("usage"),
                error=message.get("error"),
            )
            stored = await db(storage.repair_end)(
                message["id"], logged, room_name=room, log_seq=snapshot.seq
            )
            if stored:
                logger.warning(
                    "Answer %s: stored the end the room log holds (%s, %d characters); "
                    "its worker could not",
                    message["id"],
                    status,
                    len(message.get("text", "")),
                )
            found[message["id"]] = stored
        return found

    async def shutdown(self) -> None:
        """Worker stopping: drop the retries still waiting for the database."""
        if not self.storing:
            return
        # The room log holds these ends: another worker's repair stores them once the
        # database is back (`repair`).
        logger.warning(
            "Stopping with the ends of %d answers not stored yet: %s",
            len(self.storing),
            ", ".join(sorted(self.storing)),
        )
        stores = list(self.storing.values())
        for task in stores:
            task.cancel()
        await asyncio.gather(*stores, return_exceptions=True)
