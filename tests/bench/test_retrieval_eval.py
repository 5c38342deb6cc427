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
    check_answerable,
    evaluate,
    load_cases,
    render,
    summarize,
)


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
