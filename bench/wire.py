"""What client jobs record and hand back to the orchestrator (plain, picklable data)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

# How a question names its answer for the simulator's tap (bench.sim_tap): `bench:TAG`.
TAG_RE = re.compile(r"\bbench:([A-Za-z0-9_.-]+)")

Variant = Literal["server", "relay", "direct"]

# (receive time as time.time(), seq or -1, type, text). Types are the protocol's room events
# for the server, "delta"/"end" for the relay and the direct client.
Frame = tuple[float, int, str, str]


@dataclass(slots=True)
class Member:
    """One client: a WebSocket to `url` (or, for the direct client, the LLM's base URL); it
    asks `ask` (if any) `ask_offset` seconds after the start signal, and listens until
    `answers` answers have ended in its room."""

    url: str
    ask: str | None = None
    ask_offset: float = 0.0
    answers: int = 1


@dataclass(slots=True)
class MemberTrace:
    """Everything one member saw, in order."""

    url: str
    tag: str | None = None
    ask_at: float | None = None
    welcome_seq: int | None = None
    frames: list[Frame] = field(default_factory=list)
    end_status: str | None = None
    error: str | None = None
    # Frames without a seq (presence, pong) received after the start signal, their bytes, and
    # when the last one came: a join storm shows here.
    other_frames: int = 0
    other_bytes: int = 0
    last_other_at: float | None = None
    timed_out: bool = False


@dataclass(slots=True)
class StreamJob:
    variant: Variant
    members: list[Member]
    timeout: float
    connect_concurrency: int = 64


@dataclass(slots=True)
class StreamJobResult:
    traces: list[MemberTrace]
    cpu_seconds: float
    connect_seconds: float
