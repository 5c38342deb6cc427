"""The simulator's memory: its configuration, fault counters and one record per request."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .config import SimConfig

MAX_RECORDS = 100_000


@dataclass(slots=True)
class RequestRecord:
    """What the simulator did with one request; `GET /_sim/stats` lists these."""

    id: int
    started: float
    stream: bool
    model: str
    fault: str | None = None
    status: int = 200
    tokens_sent: int = 0
    # The answer went out completely (finish chunk and `[DONE]`, or the whole JSON body).
    finished: bool = False
    # The client closed the connection before the answer was complete (e.g. a cancel).
    client_disconnected_early: bool = False
    ended: float | None = None
    # The request's messages as sent (role, content): lets tests check what the LLM was shown.
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # The request's `temperature`, None when it sent none (the model's default).
    temperature: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SimulatorState:
    """Configuration, fault counters and request records of one simulator."""

    def __init__(self, config: SimConfig) -> None:
        self.initial = config
        self.defaults = config
        # Long benchmark runs must not grow memory without bound: keep the latest records.
        self.records: deque[RequestRecord] = deque(maxlen=MAX_RECORDS)
        self.closing = False
        self._next_id = 1
        self._fault_counts: dict[str, int] = {}

    def configure(self, overrides: Mapping[str, Any]) -> SimConfig:
        self.defaults = self.defaults.updated(overrides)
        self._fault_counts.pop("", None)
        return self.defaults

    def reset(self) -> None:
        """Back to the constructor's configuration, with no records and no fault counts."""
        self.defaults = self.initial
        self.records.clear()
        self._fault_counts.clear()
        self._next_id = 1

    def new_record(
        self,
        *,
        stream: bool,
        model: str,
        messages: list[dict[str, Any]] | None = None,
        temperature: float | None = None,
    ) -> RequestRecord:
        record = RequestRecord(
            id=self._next_id,
            started=time.time(),
            stream=stream,
            model=model,
            messages=list(messages or []),
            temperature=temperature,
        )
        self._next_id += 1
        self.records.append(record)
        return record

    def take_fault(self, key: str, fail_times: int) -> bool:
        """Whether this request gets the fault: always, or only the first `fail_times` per key."""
        count = self._fault_counts.get(key, 0)
        self._fault_counts[key] = count + 1
        return fail_times <= 0 or count < fail_times

    def snapshot(self) -> list[RequestRecord]:
        return [dataclasses.replace(record) for record in self.records]


STATE_KEY = web.AppKey("state", SimulatorState)
