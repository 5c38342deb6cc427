"""First delta under a burst: N distinct questions asked at once on one worker with real
retrieval over the sample knowledge base, against the direct `openai` client asking the same
simulator N questions at once, and against the floor the embedding model sets.

Per level N (1, 10, 50; `--quick`: 1 and 4), each repeat runs `burst_rounds` bursts per
variant: N members, each in a room of its own, ask at the same instant; the next burst starts
`burst_spacing + N * 0.05` s later. Every question is new: its text comes from the bilingual
evaluation set (bench/retrieval_set.json) and it carries a tag of its own, so no question is
asked twice in a run and no cache could serve one.

- first delta = the first `answer.delta` (or the direct client's first chunk) received - ask
  sent; p50 and p90 over every member of the level's bursts in that repeat;
- the floor = the N questions of each of the server's bursts embedded in one batch by the
  project's embedding function (bench.burst_probe: same settings, process of its own, the
  median over whole passes of the repeat's bursts, at least `burst_floor_repeat` batches),
  measured again before each repeat's bursts (other work on the machine moves it), each batch
  after `probe_pause` seconds idle as the server meets a burst (`floor_warm_ms`: back to back);
- the verdict (bench.report): server p50 - direct p50 <= 1.2 x the floor, per repeat against
  that repeat's floor, the median of the ratios;
- at N = 1, the server's own share = first delta - retrieval (the chat's retriever timed by
  the probe after the same pause, median per question) - the LLM's first token (the
  simulator's tap); `share_warm` against retrieval timed back to back.
"""

from __future__ import annotations

import json
import statistics
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis import DELTA_TYPES, MemberCheck, Sent, check_member
from bench.benchmarks.ttfd import first_frame_at, timing_metrics
from bench.burst_probe import Probed, measure
from bench.harness import Context, question, rotated, run_members
from bench.procs import Proc
from bench.servers import single_worker, single_worker_env
from bench.wire import Member, MemberTrace, Variant

VARIANTS: tuple[Variant, ...] = ("server", "direct")
TOKENS = 3
NAME = "burst-daphne"
SET = Path(__file__).resolve().parents[1] / "retrieval_set.json"
# Probed questions carry a tag as long as the bursts' (the embedding's cost grows with it).
_PROBE_TAG = "burst-000000-000"


def texts() -> list[str]:
    """The evaluation set's questions, Korean and English, in its order."""
    cases = json.loads(SET.read_text(encoding="utf-8"))["cases"]
    return [case["question"] for case in cases]


def steps(ctx: Context) -> int:
    return ctx.repeat * len(ctx.sizes.burst_levels) * len(VARIANTS)


def spacing(ctx: Context, level: int) -> float:
    """Seconds between a level's bursts: the previous one's answers have ended by then."""
    return ctx.sizes.burst_spacing + level * 0.05


@dataclass
class _Questions:
    """Hands out the evaluation set's texts in turn; each question also gets a new tag."""

    pool: list[str]
    taken: int = 0

    def next(self) -> str:
        text = self.pool[self.taken % len(self.pool)]
        self.taken += 1
        return text


def run(ctx: Context) -> dict[str, Any]:
    levels = ctx.sizes.burst_levels
    pool = _Questions(texts())
    runs: list[dict[str, Any]] = []
    with ExitStack() as stack:
        ctx.progress.set_description("burst: starting (ingests the sample knowledge once)")
        server = single_worker(ctx, stack, NAME, knowledge=True)
        for variant in VARIANTS:  # warm-up: pools, the model, Chroma, the lexical index
            burst_run(ctx, variant, server, [[pool.next(), pool.next()]], level=2)
        # Every burst's questions, planned now so that the probe can time the one-at-a-time
        # ones before any burst runs.
        plans = {
            (repeat, level, variant): [
                [pool.next() for _ in range(level)] for _ in range(ctx.sizes.burst_rounds)
            ]
            for repeat in range(ctx.repeat)
            for level in levels
            for variant in VARIANTS
        }
        singles = sorted(
            {text for key, bursts in plans.items() if key[1] == 1 for b in bursts for text in b}
        )
        ctx.progress.set_description("burst: timing retrieval")
        retrieval = probe(ctx, {}, singles)
        measured: dict[int, list[float]] = {level: [] for level in levels}
        measured_warm: dict[int, list[float]] = {level: [] for level in levels}
        for repeat in range(ctx.repeat):
            ctx.progress.set_description("burst: timing the floor")
            # The floor of the very questions the server's bursts of this repeat ask.
            floors = probe(ctx, {n: plans[(repeat, n, "server")] for n in levels}, [])
            for level in levels:
                measured[level].append(statistics.median(floors.floor[level]) * 1000)
                measured_warm[level].append(statistics.median(floors.floor_warm[level]) * 1000)
                for variant in rotated(VARIANTS, repeat + level):
                    ctx.progress.set_description(f"burst {level} {variant}")
                    outcome = burst_run(
                        ctx, variant, server, plans[(repeat, level, variant)], level=level
                    )
                    runs.append(
                        {
                            "bench": "burst",
                            "repeat": repeat,
                            "variant": variant,
                            "n": level,
                            "floor_ms": measured[level][-1],
                            "floor_warm_ms": measured_warm[level][-1],
                            **burst_metrics(outcome, variant, retrieval if level == 1 else None),
                        }
                    )
                    ctx.progress.update()
    return {
        "runs": runs,
        "floor_ms": measured,
        "floor_warm_ms": measured_warm,
        "retrieval_ms": {
            text: statistics.median(times) * 1000 for text, times in retrieval.retrieval.items()
        },
        "retrieval_warm_ms": {
            text: statistics.median(times) * 1000
            for text, times in retrieval.retrieval_warm.items()
        },
    }


def probe(ctx: Context, bursts: dict[int, list[list[str]]], singles: list[str]) -> Probed:
    """The floor of each level's `bursts` (each a burst's texts) and the retrieval time of each
    one-at-a-time question; the texts tagged as the bursts tag them."""
    asked = {question(_PROBE_TAG, TOKENS, text): text for text in singles}
    batches = {
        level: [[question(_PROBE_TAG, TOKENS, text) for text in burst] for burst in plan]
        for level, plan in bursts.items()
    }
    probed = measure(
        single_worker_env(ctx, NAME, knowledge=True),
        repeat=ctx.sizes.burst_floor_repeat,
        pause=ctx.sizes.probe_pause,
        batches=batches,
        retrieve=list(asked),
    )
    return probed.renamed(asked)


Outcome = tuple[list[MemberTrace], dict[str, Sent], dict[str, str]]


def burst_run(
    ctx: Context,
    variant: Variant,
    server: Proc,
    plan: list[list[str]],
    *,
    level: int,
) -> Outcome:
    """The planned bursts (each a list of question texts): `level` members asking at once,
    each in a room of its own, one burst every `spacing` seconds."""
    members, asked = [], {}
    for index, burst in enumerate(plan):
        offset = 0.2 + index * spacing(ctx, level)
        for text in burst:
            tag = ctx.new_id("burst")
            asked[tag] = text
            url = f"{server.ws_url}/ws/rooms/{tag}/" if variant == "server" else ctx.llm_base_url
            members.append(Member(url=url, ask=question(tag, TOKENS, text), ask_offset=offset))
    timeout = len(plan) * spacing(ctx, level) + 60
    outcome = run_members(ctx, variant, members, watch={}, timeout=timeout)
    return outcome.traces, outcome.sends, asked


def burst_metrics(outcome: Outcome, variant: str, retrieval: Probed | None) -> dict[str, Any]:
    """First delta per member (p50/p90), and where `retrieval` is given (N = 1) the server's
    own share of it."""
    traces, sends, asked = outcome
    columns: dict[str, list[float]] = {
        "first_delta": [],
        "llm": [],
        "start": [],
        "retrieval": [],
        "share": [],
        "retrieval_warm": [],
        "share_warm": [],
    }
    checks: list[MemberCheck] = []
    for trace in traces:
        sent = sends.get(trace.tag or "")
        checks.append(check_member(trace, sent, variant))
        first = first_frame_at(trace, DELTA_TYPES)
        if sent is None or not sent.times or first is None or trace.ask_at is None:
            continue
        waited = first - trace.ask_at
        llm = sent.times[0] - sent.received
        columns["first_delta"].append(waited)
        columns["llm"].append(llm)
        start = first_frame_at(trace, {"answer.start"})
        if start is not None:
            columns["start"].append(start - trace.ask_at)
        if retrieval is not None and variant == "server":
            text = asked[trace.tag or ""]
            for suffix, probed in (("", retrieval.retrieval), ("_warm", retrieval.retrieval_warm)):
                spent = statistics.median(probed[text])
                columns["retrieval" + suffix].append(spent)
                columns["share" + suffix].append(waited - spent - llm)
    return timing_metrics(columns, checks, samples=len(columns["first_delta"]))
