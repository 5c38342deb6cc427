"""A small Server-Sent Events reader over an httpx streaming response, parsing the stream the
way a browser's `EventSource` does (fields, comments, blank-line dispatch)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    """One dispatched event; `id` is None when the block had no `id:` line."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Comment:
    text: str


@dataclass
class SseReader:
    response: httpx.Response
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lines: AsyncIterator[str] = self.response.aiter_lines()

    async def read(self) -> Event | Comment:
        """The next event or comment (comments are also kept in `self.comments`)."""
        data: list[str] = []
        kind = "message"
        event_id: str | None = None
        async for line in self._lines:
            if line == "":
                if data:
                    return Event(kind, "\n".join(data), event_id)
                kind, event_id = "message", None
                continue
            if line.startswith(":"):
                text = line[1:].removeprefix(" ")
                self.comments.append(text)
                return Comment(text)
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
            elif name == "id":
                event_id = value
            elif name == "retry":
                self.retry = int(value)
        raise EOFError("the stream ended")

    async def event(self, timeout: float = 15.0) -> Event:
        """The next event, skipping comments."""
        async with asyncio.timeout(timeout):
            while True:
                item = await self.read()
                if isinstance(item, Event):
                    return item

    async def until(
        self, predicate: Callable[[Event], bool], timeout: float = 20.0, skip_presence: bool = True
    ) -> list[Event]:
        """Events up to and including the first matching `predicate`."""
        events: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                item = await self.event(timeout)
                if skip_presence and item.event == "presence":
                    continue
                events.append(item)
                if predicate(item):
                    return events

    async def rest(self, timeout: float = 15.0) -> list[Event | Comment]:
        """Everything until the server ends the stream."""
        items: list[Event | Comment] = []
        async with asyncio.timeout(timeout):
            try:
                while True:
                    items.append(await self.read())
            except EOFError:
                return items


def is_end(event: Event) -> bool:
    return event.event == "answer.end"
