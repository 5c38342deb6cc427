"""The retrieval evaluation (`python -m bench.retrieval`) still runs: a tiny slice of its set,
over the sample knowledge base, every configuration. It judges no timing; it checks that the
set's answers exist in the chunks and that the report has every slice and configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.retrieval import (
    CONFIGS,
    DEFAULT_SET,
    LLM_CONFIG,
    check_answerable,
    evaluate,
    load_cases,
    render,
    summarize,
)
from chat.llm.openai_provider import OpenAIProvider
from llmsim import running_simulator, simulated_text


async def test_the_evaluation_runs_on_a_tiny_slice(knowledge_base: str) -> None:
    cases = load_cases(limit=1)  # one case per slice and language
    assert {(case.slice, case.lang) for case in cases} == {
        (part, lang) for part in ("direct", "followup", "exact", "switch") for lang in ("ko", "en")
    }
    check_answerable(load_cases(), knowledge_base)  # the whole set: no typo in an answer
    outcomes = await evaluate(cases, collection=knowledge_base, repeat=1)
    assert set(outcomes) == {config.name for config in CONFIGS}
    summary = summarize(outcomes)
    assert summary["groups"]["all"]["vector"]["n"] == len(cases)
    assert {"direct", "followup", "exact", "switch", "followup/ko"} <= set(summary["groups"])
    for name in outcomes:
        assert summary["timing"][name]["median_ms"] > 0
    table = render(summary)
    assert table.count("\n") > len(summary["groups"]) and "hybrid+rewrite r@1 / r@3" in table
    # The issue's own example: after "라떼 가격은?", "그거 아이스로도 돼요?" is found once
    # rewritten, and searched with the previous question's words.
    [iced] = [o for o in outcomes["hybrid+rewrite"] if o.case.id == "f-ko-iced"]
    assert iced.rank is not None and iced.rank <= 3
    assert iced.query.startswith("라떼 가격은")
    [raw] = [o for o in outcomes["vector"] if o.case.id == "f-ko-iced"]
    assert raw.query == "그거 아이스로도 돼요?"


def test_a_case_whose_answer_is_in_no_chunk_is_refused(knowledge_base: str, tmp_path: Path) -> None:
    data = json.loads(DEFAULT_SET.read_text(encoding="utf-8"))
    data["cases"] = data["cases"][:1]
    data["cases"][0]["contains"] = ["아메리카노 9,999원"]
    broken = tmp_path / "set.json"
    broken.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SystemExit, match="d-ko-americano"):
        check_answerable(load_cases(broken), knowledge_base)


async def test_the_llm_rewrite_configuration_asks_the_model_for_follow_ups_only(
    knowledge_base: str,
) -> None:
    """With `--llm-base-url`: here the simulator, whose "rewrite" is its fixed text."""
    cases = [case for case in load_cases(limit=1) if case.slice in ("followup", "direct")]
    async with running_simulator(tokens=4, tps=0, first_token_delay=0) as sim:
        llm = OpenAIProvider(base_url=sim.base_url, api_key="sim", model="sim")
        try:
            outcomes = await evaluate(
                cases, collection=knowledge_base, configs=[LLM_CONFIG], llm=llm
            )
        finally:
            await llm.aclose()
        asked = sim.stats()
    by_slice = {o.case.slice: o for o in outcomes[LLM_CONFIG.name] if o.case.lang == "en"}
    assert by_slice["followup"].query == simulated_text(4).strip()
    assert by_slice["direct"].query == by_slice["direct"].case.question  # no conversation
    assert len(asked) == 2 and not any(record.stream for record in asked)  # one per follow-up
    assert "hybrid+llm-rewrite" in render(summarize(outcomes))
