"""Time to the first delta, split into retrieval, the LLM's first token and the server's share.

One question at a time (each member in a room of its own asks `ttfd_spacing` seconds after the
previous one), real retrieval over the sample knowledge base (`--quick`: an empty one). Per
sample, all on the machine's one wall clock:

- time to first delta (TTFD) = first delta received at the client - ask sent;
- LLM first token = the simulator's first content token sent - the request received by it (tap);
- retrieval = the chat's retriever timed outside the server (bench.burst_probe, same
  settings and Chroma directory, median of 5 per question), taken before the samples, each
  call after `probe_pause` seconds idle as the server meets a question (`retrieval_warm`:
  back to back);
- the server's share = TTFD - retrieval - LLM first token: receiving and storing the question,
  the room log, the prompt, the HTTP request to the LLM and delivering the delta
  (`share_warm`: against retrieval timed back to back).

The relay and the direct `openai` client get the same split without retrieval.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from typing import Any

from bench.analysis import DELTA_TYPES, MemberCheck, Sent, check_member, summary_ms
from bench.burst_probe import Probed, measure
from bench.harness import Context, question, rotated, run_members
from bench.procs import Proc, start_relay
from bench.servers import single_worker, single_worker_env
from bench.wire import Member, MemberTrace, Variant

VARIANTS: tuple[Variant, ...] = ("server", "relay", "direct")
TOKENS = 3
QUESTIONS = (
    "How much is a latte with oat milk?",
    "아메리카노 가격이 얼마인가요?",
    "When are you open on Sunday?",
    "디저트에 알레르기 정보가 있나요?",
    "Can I bring my dog inside?",
    "딸기 라떼는 언제까지 판매하나요?",
    "Do you have decaf?",
    "와이파이 비밀번호는 어디에 있나요?",
)
# Probed questions carry a tag of the same length as the samples' (its cost barely moves).
_PROBE_TAG = "ttfd-000000-000"


def steps(ctx: Context) -> int:
    return ctx.repeat * len(VARIANTS)


def run(ctx: Context) -> dict[str, Any]:
    knowledge = ctx.sizes.ttfd_knowledge
    runs: list[dict[str, Any]] = []
    with ExitStack() as stack:
        ctx.progress.set_description("ttfd: starting (ingests the sample knowledge once)")
        server = single_worker(ctx, stack, "ttfd-daphne", knowledge=knowledge)
        relay = stack.enter_context(
            start_relay(ctx.workdir, base_url=ctx.llm_base_url, name="ttfd-relay")
        )
        targets = {"server": server, "relay": relay}
        for variant in ("server", "relay"):
            sample_run(ctx, variant, targets, samples=2)  # warm-up: pools, model, Chroma
        ctx.progress.set_description("ttfd: timing retrieval")
        retrieval = probe_retrieval(ctx)
        for repeat in range(ctx.repeat):
            for variant in rotated(VARIANTS, repeat):
                ctx.progress.set_description(f"ttfd {variant}")
                outcome = sample_run(ctx, variant, targets, samples=ctx.sizes.ttfd_samples)
                runs.append(
                    {
                        "bench": "ttfd",
                        "repeat": repeat,
                        "variant": variant,
                        "knowledge": knowledge,
                        **ttfd_metrics(outcome, variant, retrieval),
                    }
                )
                ctx.progress.update()
    return {
        "runs": runs,
        "retrieval_ms": {
            text: statistics.median(times) * 1000 for text, times in retrieval.retrieval.items()
        },
        "retrieval_warm_ms": {
            text: statistics.median(times) * 1000
            for text, times in retrieval.retrieval_warm.items()
        },
    }


def probe_retrieval(ctx: Context) -> Probed:
    asked = {question(_PROBE_TAG, TOKENS, text): text for text in QUESTIONS}
    probed = measure(
        single_worker_env(ctx, "ttfd-daphne", knowledge=ctx.sizes.ttfd_knowledge),
        repeat=5,
        pause=ctx.sizes.probe_pause,
        retrieve=list(asked),
    )
    return probed.renamed(asked)


def sample_run(
    ctx: Context, variant: Variant, targets: dict[str, Proc], *, samples: int
) -> tuple[list[MemberTrace], dict[str, Sent], dict[str, str]]:
    members, texts = [], {}
    for index in range(samples):
        tag = ctx.new_id("ttfd")
        text = QUESTIONS[index % len(QUESTIONS)]
        texts[tag] = text
        if variant == "server":
            url = f"{targets['server'].ws_url}/ws/rooms/{tag}/"
        elif variant == "relay":
            url = f"{targets['relay'].ws_url}/{tag}"
        else:
            url = ctx.llm_base_url
        offset = 0.2 + index * ctx.sizes.ttfd_spacing
        members.append(Member(url=url, ask=question(tag, TOKENS, text), ask_offset=offset))
    timeout = samples * ctx.sizes.ttfd_spacing + 60
    outcome = run_members(ctx, variant, members, watch={}, timeout=timeout)
    return outcome.traces, outcome.sends, texts


def ttfd_metrics(
    outcome: tuple[list[MemberTrace], dict[str, Sent], dict[str, str]],
    variant: str,
    retrieval: Probed,
) -> dict[str, Any]:
    traces, sends, texts = outcome
    columns: dict[str, list[float]] = {
        "ttfd": [],
        "llm": [],
        "retrieval": [],
        "share": [],
        "retrieval_warm": [],
        "share_warm": [],
        "start": [],
        "sources_gap": [],
    }
    checks: list[MemberCheck] = []
    for trace in traces:
        sent = sends.get(trace.tag or "")
        checks.append(check_member(trace, sent, variant))
        first = first_frame_at(trace, DELTA_TYPES)
        if sent is None or not sent.times or first is None or trace.ask_at is None:
            continue
        ttfd = first - trace.ask_at
        llm = sent.times[0] - sent.received
        columns["ttfd"].append(ttfd)
        columns["llm"].append(llm)
        text = texts[trace.tag or ""]
        for suffix, probed in (("", retrieval.retrieval), ("_warm", retrieval.retrieval_warm)):
            spent = statistics.median(probed[text]) if variant == "server" else 0.0
            columns["retrieval" + suffix].append(spent)
            columns["share" + suffix].append(ttfd - spent - llm)
        start, sources = (
            first_frame_at(trace, {"answer.start"}),
            first_frame_at(trace, {"answer.sources"}),
        )
        if start is not None:
            columns["start"].append(start - trace.ask_at)
            if sources is not None:
                columns["sources_gap"].append(sources - start)
    return timing_metrics(columns, checks, samples=len(columns["ttfd"]))


def timing_metrics(
    columns: dict[str, list[float]], checks: list[MemberCheck], *, samples: int
) -> dict[str, Any]:
    """The samples, the members with a problem (and the first five problems), and each
    column's summary in ms: the metrics of a benchmark that times members' frames."""
    problems = [problem for check in checks for problem in check.problems]
    metrics: dict[str, Any] = {
        "samples": samples,
        "lost": sum(1 for check in checks if check.problems),
        "problems": problems[:5],
    }
    for name, values in columns.items():
        metrics.update(summary_ms(values, name))
    return metrics


def first_frame_at(trace: MemberTrace, kinds: set[str]) -> float | None:
    """When the member received its first frame of one of `kinds`, or None."""
    return next((t for t, _, kind, _ in trace.frames if kind in kinds), None)
