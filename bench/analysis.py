"""Turning what the clients saw and what the simulator sent into latencies and losses.

Attribution of latency to tokens: the server may merge consecutive deltas into one frame, so a
frame is not a token. The simulator's tap gives, for each answer, every token's text and its
`sim_sent_at`, in order. The client joins the delta frames it received in order; token i is
delivered by the first frame after which the joined text is at least as long as tokens 0..i
joined (text is only ever appended, and checked to be exactly the tokens joined). Its latency is
that frame's receive time minus token i's send time. A frame that merged three tokens therefore
counts three latencies, the oldest token's the largest: what a reader actually waited.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.wire import MemberTrace


@dataclass(slots=True)
class Sent:
    """One answer as the simulator sent it (from the tap)."""

    received: float
    times: list[float]
    tokens: list[str]

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Sent:
        return cls(received=data["received"], times=data["times"], tokens=data["tokens"])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float], prefix: str) -> dict[str, float]:
    """p50, p90, p99 and max of durations in seconds, as milliseconds."""
    return {
        f"{prefix}_p50_ms": percentile(seconds, 50) * 1000,
        f"{prefix}_p90_ms": percentile(seconds, 90) * 1000,
        f"{prefix}_p99_ms": percentile(seconds, 99) * 1000,
        f"{prefix}_max_ms": (max(seconds) if seconds else math.nan) * 1000,
    }


def delivery_times(sent: Sent, deltas: Iterable[tuple[float, str]]) -> list[float | None]:
    """When each token reached the client (None: never), by the joined-length rule above."""
    ends: list[int] = []
    total = 0
    for token in sent.tokens:
        total += len(token)
        ends.append(total)
    delivered: list[float | None] = [None] * len(ends)
    joined = 0
    index = 0
    for received, text in deltas:
        joined += len(text)
        while index < len(ends) and ends[index] <= joined:
            delivered[index] = received
            index += 1
    return delivered


@dataclass(slots=True)
class MemberCheck:
    """What one member received of one answer, and everything wrong with it."""

    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent, latency)
    frames: int = 0
    tokens: int = 0
    problems: list[str] = field(default_factory=list)
    # Still streaming when the client gave up, everything received so far correct: an
    # overloaded server, not a lost frame.
    unfinished: bool = False


DELTA_TYPES = {"answer.delta", "delta"}
END_TYPES = {"answer.end", "end"}


def check_member(trace: MemberTrace, sent: Sent | None, variant: str) -> MemberCheck:
    """Latencies of every token this member received, and any frame lost, duplicated, out of
    order, or text that is not exactly what the simulator sent."""
    check = MemberCheck()
    if trace.error is not None:
        check.problems.append(trace.error)
    if sent is None:
        check.problems.append("the simulator never saw this answer's request")
        return check
    frames = trace.frames
    deltas = [(t, text) for t, _, kind, text in frames if kind in DELTA_TYPES]
    check.frames = len(deltas)
    check.problems.extend(_sequence_problems(trace, variant))
    joined = "".join(text for _, text in deltas)
    ends = [text for _, _, kind, text in frames if kind in END_TYPES]
    if trace.timed_out and not ends:
        check.unfinished = True
        if not sent.text.startswith(joined):
            check.problems.append("the text received so far is not what the LLM sent")
    elif len(ends) != 1:
        check.problems.append(f"{len(ends)} end frames")
    elif ends[0] != joined:
        check.problems.append("the end frame's text is not the deltas joined")
    if trace.end_status not in (None, "complete"):
        check.problems.append(f"answer ended {trace.end_status}")
    if joined != sent.text and not check.unfinished:
        check.problems.append(
            f"joined text differs from what the LLM sent ({len(joined)} of {len(sent.text)} chars)"
        )
    for sent_at, received in zip(sent.times, delivery_times(sent, deltas), strict=True):
        if received is not None:
            check.latencies.append((sent_at, received - sent_at))
    check.tokens = len(check.latencies)
    return check


def _sequence_problems(trace: MemberTrace, variant: str) -> list[str]:
    if variant == "direct":
        return []
    seqs = [seq for _, seq, _, _ in trace.frames]
    if not seqs:
        return ["no room events"]
    if variant == "server":
        first = (trace.welcome_seq or 0) + 1
        kinds = [kind for _, _, kind, _ in trace.frames]
        problems = []
        if kinds.count("answer.start") != 1:
            problems.append(f"{kinds.count('answer.start')} answer.start frames")
        if (
            "answer.sources" in kinds
            and "answer.start" in kinds
            and kinds.index("answer.sources") < kinds.index("answer.start")
        ):
            problems.append("answer.sources before answer.start")
        if (
            "answer.sources" in kinds
            and "answer.delta" in kinds
            and kinds.index("answer.sources") > kinds.index("answer.delta")
        ):
            problems.append("answer.sources after a delta")
    else:
        first = 1
        problems = []
    expected = list(range(first, first + len(seqs)))
    if seqs != expected:
        gaps = sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
        problems.append(f"seq not consecutive from {first} ({gaps} breaks, first seq {seqs[0]})")
    return problems


def steady_window(sents: Iterable[Sent]) -> tuple[float, float]:
    """The steady state: from when 90% of the answers had sent their first token to when 10%
    had sent their last one (one answer: its first to its last token). An overloaded server
    starts answers late; when no such window exists, the whole run counts (returned as an
    unbounded window)."""
    started = [s.times[0] for s in sents if s.times]
    ended = [s.times[-1] for s in sents if s.times]
    if not started:
        return (0.0, 0.0)
    low, high = percentile(started, 90), percentile(ended, 10)
    return (low, high) if low < high else (-math.inf, math.inf)
