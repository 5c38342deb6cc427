"""The soak's sizes and what client processes are told (plain, picklable data)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.soak.tracker import Tally


@dataclass(frozen=True, slots=True)
class SoakSize:
    """How long, how many, and how often: the full run's, `--quick`'s, or the options'."""

    minutes: float
    connections: int
    rooms: int
    # A Redis cut every this many seconds (0: none), each this long.
    redis_cut_every: float
    redis_cut_seconds: float
    # Resources count as steady after this many seconds; sampled every `sample_every`.
    warmup: float
    sample_every: float
    # The first joins are spread over `ramp` seconds.
    ramp: float
    # A room gets a question every `ask_every` seconds (uniform between the two).
    ask_every: tuple[float, float]
    # A member leaves every `leave_every` seconds on average (exponential), stays away for
    # `away` seconds (uniform), and reconnects every `reconnect_every` on average (with
    # `after`, half of them dropping the socket without a close frame).
    leave_every: float
    away: tuple[float, float]
    reconnect_every: float
    # After the last ask: at most this long for every answer to end.
    drain: float
    # The room log's retention (CHAT_LOG_RETENTION_SECONDS): short, so that Redis' share of
    # the rooms' state reaches its steady size within the warm-up.
    log_retention: float


FULL = SoakSize(
    minutes=60,
    connections=1000,
    rooms=100,
    redis_cut_every=600,
    redis_cut_seconds=10,
    warmup=600,
    sample_every=30,
    ramp=60,
    ask_every=(30, 60),
    leave_every=900,
    away=(5, 30),
    reconnect_every=600,
    drain=180,
    log_retention=300,
)

QUICK = SoakSize(
    minutes=5,
    connections=200,
    rooms=20,
    redis_cut_every=60,
    redis_cut_seconds=5,
    warmup=60,
    sample_every=10,
    ramp=20,
    ask_every=(30, 60),
    leave_every=180,
    away=(5, 20),
    reconnect_every=150,
    drain=120,
    log_retention=60,
)


@dataclass(frozen=True, slots=True)
class Answers:
    """What the questions ask the simulator for (`[[sim tps=.. tokens=..]]`): mostly short
    answers, and a share of long ones that are still being written when Redis is cut."""

    short_tokens: tuple[int, int] = (20, 100)
    short_tps: tuple[float, float] = (20, 40)
    long_share: float = 0.2
    long_tokens: tuple[int, int] = (150, 300)
    long_tps: tuple[float, float] = (15, 25)


@dataclass(frozen=True, slots=True)
class Slot:
    """One member: its room, the worker it first joins, and when (seconds after the start)."""

    name: str
    room: str
    worker: int
    join_at: float


@dataclass(frozen=True, slots=True)
class Timeline:
    """Seconds after the start signal: asks from `ask_from` to `ask_until` (churn stops then
    too), and everything must be over by `stop_by`."""

    ask_from: float
    ask_until: float
    stop_by: float


@dataclass(slots=True)
class SoakJob:
    process: int
    ports: list[int]
    slots: list[Slot]
    size: SoakSize
    timeline: Timeline
    answers: Answers
    seed: int


@dataclass(slots=True)
class AskRecord:
    """One question a member asked (with a `client_id`), and what became of it."""

    client_id: str
    room: str
    slot: str
    sent_at: float
    tries: int = 1
    # pending, posted (its `question` event arrived), refused, unconfirmed (given up)
    state: str = "pending"
    question_id: str | None = None
    refusals: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SoakJobResult:
    process: int
    tally: Tally
    counters: Counter[str]
    # Room name -> {"max_seq", "events", "answers": {answer id -> AnswerSeen fields},
    # "questions"}
    rooms: dict[str, dict[str, Any]]
    asks_not_posted: list[AskRecord]
    asks: int
    cpu_seconds: float
    connected_at_end: int
    members: int
    # Members not connected when the soak ended (slot, state, cursor), and the soak's own
    # failures (a client task that raised): both should be empty.
    absent_at_end: list[dict[str, Any]]
    failures: list[str]
