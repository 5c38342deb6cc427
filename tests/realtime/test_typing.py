"""Typing notices on one worker, with the channel layer at the edge: the sender's own
connection is skipped, a notice this worker sent that comes back through the room's group is
not pushed twice, and a channel layer that is away costs nothing but the other workers' copy."""

from __future__ import annotations

import json
from typing import Any

from chat.realtime.typing import NOTICE, Typing

MINJI = {"id": "u:1", "name": "Minji"}


class Outbox:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def push(self, frame: str) -> bool:
        self.frames.append(json.loads(frame))
        return True


class Hub:
    def __init__(self, *outboxes: Outbox) -> None:
        self.outboxes = list(outboxes)

    def connections(self, room: str) -> list[Outbox]:
        return list(self.outboxes) if room == "cafe" else []


class Layer:
    def __init__(self, *, fails: bool = False) -> None:
        self.fails = fails
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.fails:
            raise ConnectionError("Redis is away")
        self.sent.append((group, message))


async def test_the_sender_is_skipped_and_its_own_notice_is_not_pushed_twice() -> None:
    sender, other = Outbox(), Outbox()
    layer = Layer()
    typing = Typing(hub=Hub(sender, other), layer=layer)
    typing.control_channel = "worker.a!1"
    await typing.notify("cafe", MINJI, sender=sender)
    assert sender.frames == []
    assert other.frames == [{"type": "typing", "user": MINJI}]
    [(group, message)] = layer.sent
    assert group == "room.cafe"
    assert message == {"type": NOTICE, "room": "cafe", "user": MINJI, "origin": "worker.a!1"}
    typing.deliver(message)  # our own notice, back through the group
    assert other.frames == [{"type": "typing", "user": MINJI}]
    # Another worker's notice goes to every member here.
    typing.deliver({**message, "origin": "worker.b!2"})
    assert sender.frames == [{"type": "typing", "user": MINJI}]
    assert other.frames == [{"type": "typing", "user": MINJI}] * 2


async def test_a_channel_layer_that_is_away_only_costs_the_other_workers_copy() -> None:
    sender, other = Outbox(), Outbox()
    typing = Typing(hub=Hub(sender, other), layer=Layer(fails=True))
    await typing.notify("cafe", MINJI, sender=sender)
    assert other.frames == [{"type": "typing", "user": MINJI}]
