"""How big each benchmark is: the full run (docs/benchmarks.md's table) and `--quick`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamSize:
    """Concurrent answers per worker, each `tokens` long, asked over `ramp` seconds."""

    answers: int
    tokens: int
    ramp: float


@dataclass(frozen=True, slots=True)
class Sizes:
    tps: float
    first_token_delay: float
    latency: tuple[StreamSize, ...]
    cpu: tuple[StreamSize, ...]
    ttfd_samples: int
    ttfd_spacing: float
    ttfd_knowledge: bool
    fanout_members: int
    fanout_tokens: int
    # Seconds between the start signal (every member joined) and the ask.
    fanout_settle: float
    idle_connections: int
    idle_warm: int
    idle_room_size: int
    idle_hold: float
    # At most this many idle repeats (5,000 connects take over a minute per run).
    idle_repeat: int
    # Answers (or connections) per client process; more are spread over the pool.
    per_client_process: int
    # The reconnect storm: members, rooms, every Nth room with an answer streaming at the kill,
    # the clients' patience, and how long --profile samples worker B.
    storm_members: int = 5000
    storm_rooms: int = 200
    storm_long_every: int = 4
    storm_timeout: float = 180.0
    storm_profile_seconds: float = 20.0
    # First delta under a burst: N questions at once per level, bursts per level and repeat,
    # seconds between bursts (plus 0.05 s per question), and the floor's timed batches.
    burst_levels: tuple[int, ...] = (1, 10, 50)
    burst_rounds: int = 5
    burst_spacing: float = 0.5
    burst_floor_repeat: int = 7
    # Seconds the retrieval and floor probes wait idle before each timed call: about what the
    # server has between one-at-a-time questions (TTFD and bursts of 1 ask every 0.5 to
    # 0.55 s, and each answer takes about 0.3 s).
    probe_pause: float = 0.2


FULL = Sizes(
    tps=50.0,
    first_token_delay=0.2,
    latency=(
        StreamSize(answers=1, tokens=150, ramp=0.0),
        StreamSize(answers=25, tokens=250, ramp=0.5),
        StreamSize(answers=100, tokens=250, ramp=1.0),
        StreamSize(answers=500, tokens=150, ramp=2.0),
    ),
    cpu=(StreamSize(answers=100, tokens=250, ramp=1.0),),
    ttfd_samples=15,
    ttfd_spacing=0.5,
    ttfd_knowledge=True,
    fanout_members=200,
    fanout_tokens=200,
    fanout_settle=5.0,
    idle_connections=5000,
    idle_warm=100,
    idle_room_size=5,  # 5,000 connections in 1,000 rooms (the speed issue's memory goal)
    idle_hold=5.0,
    idle_repeat=1,
    per_client_process=250,
    storm_members=5000,
    storm_rooms=200,
)

QUICK = Sizes(
    tps=50.0,
    first_token_delay=0.2,
    latency=(
        StreamSize(answers=1, tokens=20, ramp=0.0),
        StreamSize(answers=2, tokens=20, ramp=0.1),
    ),
    cpu=(StreamSize(answers=2, tokens=20, ramp=0.1),),
    ttfd_samples=3,
    ttfd_spacing=0.5,
    ttfd_knowledge=False,
    fanout_members=5,
    fanout_tokens=20,
    fanout_settle=0.2,
    idle_connections=20,
    idle_warm=4,
    idle_room_size=5,
    idle_hold=0.5,
    idle_repeat=1,
    per_client_process=250,
    storm_members=20,
    storm_rooms=4,
    storm_long_every=2,
    storm_timeout=60.0,
    storm_profile_seconds=3.0,
    burst_levels=(1, 4),
    burst_rounds=2,
    burst_spacing=0.3,
    burst_floor_repeat=3,
)
