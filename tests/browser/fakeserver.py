"""A scripted server side of the room protocol v1, for page tests that need exact control over
frames, seqs and close codes. It answers the page's WebSocket through Playwright's WebSocket
routing, so the real page (served by the real server) talks to it instead of the consumer."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

ME = {"id": "g:me", "name": "Happy Otter 1a2"}
OTHER = {"id": "u:7", "name": "김민지"}
ROOM_EVENTS = {
    "message",
    "question",
    "answer.start",
    "answer.sources",
    "answer.delta",
    "answer.end",
    "message.redacted",
}


@dataclass
class FakeConnection:
    route: Any
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    @property
    def after(self) -> int | None:
        values = parse_qs(urlparse(self.url).query).get("after")
        return int(values[-1]) if values else None

    def send(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self.route.send(json.dumps(frame, ensure_ascii=False))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True
        await self.route.close(code=code, reason=reason)


class FakeRoomServer:
    """The room: a seq-numbered event log, history for full welcomes, members, and every
    connection the page opened (with the frames it sent)."""

    def __init__(self, room: str = "lobby", user: dict[str, str] = ME) -> None:
        self.room = room
        self.user = user
        self.log: list[dict[str, Any]] = []  # room events with seq 1, 2, ...
        self.history: list[dict[str, Any]] = []  # what a full welcome sends
        self.members: list[dict[str, str]] = [user]
        self.connections: list[FakeConnection] = []
        # Replaces the default welcome logic when set: called with each new connection.
        self.on_connect: Callable[[FakeConnection], None] | None = None
        # The welcome's `access` (what the page's person may do), when set.
        self.access: dict[str, Any] | None = None
        self.accept = True

    async def install(self, page: Any) -> None:
        await page.route_web_socket(re.compile(r".*/ws/rooms/.*"), self._connected)

    # --- connection handling ----------------------------------------------------------------

    def _connected(self, route: Any) -> None:
        conn = FakeConnection(route=route, url=route.url)
        self.connections.append(conn)
        route.on_message(lambda message: conn.received.append(json.loads(message)))
        if self.on_connect is not None:
            self.on_connect(conn)
        elif self.accept:
            self.welcome(conn)

    @property
    def seq(self) -> int:
        return len(self.log)

    @property
    def current(self) -> FakeConnection:
        return self.connections[-1]

    def welcome(self, conn: FakeConnection, *, replay_from: int | None = None) -> None:
        """Resume when the page asks with ?after= (replaying from `replay_from`, default
        after + 1), else a full welcome with `history`."""
        after = conn.after
        if after is not None and after <= self.seq:
            conn.send(self._welcome(seq=after, resumed=True, history=[]))
            start = after + 1 if replay_from is None else replay_from
            for event in self.log[start - 1 :]:
                conn.send(event)
        else:
            conn.send(self._welcome(seq=self.seq, resumed=False, history=self.history))

    def _welcome(self, *, seq: int, resumed: bool, history: list[dict[str, Any]]) -> dict[str, Any]:
        frame = {
            "type": "welcome",
            "room": self.room,
            "user": self.user,
            "seq": seq,
            "resumed": resumed,
            "history": history,
            "members": self.members,
        }
        if self.access is not None:
            frame["access"] = self.access
        return frame

    # --- room events --------------------------------------------------------------------------

    def emit(self, frame: dict[str, Any], *, deliver: bool = True) -> dict[str, Any]:
        """Append a room event (next seq) and send it on the current connection."""
        event = {**frame, "seq": self.seq + 1}
        self.log.append(event)
        if deliver and self.connections:
            self.current.send(event)
        return event

    def send(self, frame: dict[str, Any]) -> None:
        """Send a frame as is (no seq bookkeeping): presence, error, duplicates, gaps."""
        self.current.send(frame)

    def message(
        self, mid: str, text: str, user: dict[str, str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A person's plain message (`say`)."""
        return self.emit(
            {
                "type": "message",
                "id": mid,
                "user": user or self.user,
                "text": text,
                "created": "2026-11-23T09:41:00+00:00",
                **extra,
            }
        )

    def question(
        self, qid: str, text: str, user: dict[str, str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        return self.emit(
            {
                "type": "question",
                "id": qid,
                "user": user or self.user,
                "text": text,
                "created": "2026-11-23T09:41:00+00:00",
                **extra,
            }
        )

    def answer(
        self,
        aid: str,
        qid: str,
        chunks: list[str],
        *,
        status: str = "complete",
        sources: list[dict[str, Any]] | None = None,
        end: bool = True,
        error: dict[str, str] | None = None,
        query: str | None = None,
    ) -> None:
        self.emit({"type": "answer.start", "id": aid, "question_id": qid})
        if sources is not None:
            frame: dict[str, Any] = {"type": "answer.sources", "answer_id": aid, "sources": sources}
            if query is not None:
                frame["query"] = query
            self.emit(frame)
        for chunk in chunks:
            self.emit({"type": "answer.delta", "answer_id": aid, "text": chunk})
        if end:
            self.end(aid, "".join(chunks), status=status, error=error)

    def end(
        self, aid: str, text: str, *, status: str = "complete", error: dict[str, str] | None = None
    ) -> None:
        frame: dict[str, Any] = {
            "type": "answer.end",
            "answer_id": aid,
            "status": status,
            "text": text,
        }
        if error:
            frame["error"] = error
        self.emit(frame)

    # --- waiting --------------------------------------------------------------------------------

    async def wait_connections(self, n: int, timeout: float = 10.0) -> FakeConnection:
        async with asyncio.timeout(timeout):
            while len(self.connections) < n:  # noqa: ASYNC110 - filled by Playwright callbacks
                await asyncio.sleep(0.02)
        return self.connections[n - 1]

    async def wait_received(
        self, type_: str, timeout: float = 10.0, conn: FakeConnection | None = None, nth: int = 1
    ) -> dict[str, Any]:
        """The `nth` frame of type `type_` the page sent (on `conn`, or on any connection)."""
        async with asyncio.timeout(timeout):
            while True:
                frames = [
                    frame
                    for c in ([conn] if conn else self.connections)
                    for frame in c.received
                    if frame.get("type") == type_
                ]
                if len(frames) >= nth:
                    return frames[nth - 1]
                await asyncio.sleep(0.02)

    def received(self, type_: str) -> list[dict[str, Any]]:
        """Every frame of type `type_` the page sent so far."""
        return [f for c in self.connections for f in c.received if f.get("type") == type_]


def source(n: int, title: str, snippet: str) -> dict[str, Any]:
    return {
        "id": f"s{n}",
        "title": title,
        "source": f"knowledge/{title.lower().replace(' ', '-')}.md",
        "snippet": snippet,
        "score": 0.9 - n / 10,
    }
