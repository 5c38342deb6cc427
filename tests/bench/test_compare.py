"""`--compare OLD.json`: each figure old → new, better or worse in the direction that matters
for it, from two small saved results (tests/bench/data/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import compare, report

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def _load(name: str) -> dict[str, Any]:
    results: dict[str, Any] = json.loads((DATA / name).read_text())
    results["summary"] = report.summarize(results)
    return results


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    return compare.compare(_load("compare-old.json"), _load("compare-new.json"))


def _row(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [row for row in rows if all(row[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_lower_cpu_is_better_and_figures_are_medians_over_repeats(
    rows: list[dict[str, Any]],
) -> None:
    row = _row(rows, bench="stream", variant="server", figure="cpu_ms_per_1k_tokens")
    assert (row["old"], row["new"], row["verdict"]) == (310.0, 250.0, "better")
    assert row["size"] == "100 answers"


def test_higher_throughput_is_better(rows: list[dict[str, Any]]) -> None:
    row = _row(rows, bench="stream", variant="server", figure="tokens_per_s")
    assert (row["old"], row["new"], row["verdict"]) == (3100.0, 3700.0, "better")
    ratio = _row(rows, bench="ratio", figure="stream 100 tokens_per_s server/relay")
    assert ratio["verdict"] == "better"


def test_higher_latency_is_worse_and_small_moves_are_the_same(
    rows: list[dict[str, Any]],
) -> None:
    assert _row(rows, bench="fanout", variant="relay", figure="lat_p99_ms")["verdict"] == "worse"
    assert _row(rows, bench="fanout", variant="server-2w-joining", figure="lat_p99_ms")[
        "verdict"
    ] == ("better")
    assert _row(rows, bench="stream", variant="relay", figure="lat_p99_ms")["verdict"] == "same"


def test_a_figure_measured_in_one_run_only_is_not_compared(rows: list[dict[str, Any]]) -> None:
    """The new run has a one-worker fan-out the old one had not."""
    assert not [row for row in rows if row["variant"] == "server-1w"]
    assert not [row for row in rows if row["figure"] == "cpu_ms_per_1k_frames"]


def test_verdicts() -> None:
    assert compare.verdict(100.0, 100.5, "lower") == "same"
    assert compare.verdict(100.0, 90.0, "lower") == "better"
    assert compare.verdict(100.0, 90.0, "higher") == "worse"
    assert compare.verdict(0.0, 0.0, "lower") == "same"
    assert compare.verdict(0.0, 1.0, "lower") == "worse"


def test_report_command_prints_the_comparison() -> None:
    """`python -m bench.report NEW.json --compare OLD.json`, as a user runs it."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.report",
            str(DATA / "compare-new.json"),
            "--compare",
            str(DATA / "compare-old.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = completed.stdout
    assert "**Compared with aaaaaaa**" in out
    cpu = "| stream | 100 answers | server | cpu_ms_per_1k_tokens | 310 | 250 | -19% | better |"
    assert cpu in out
    assert "| fanout |  | relay | lat_p99_ms | 11 | 11.5 | +5% | **worse** |" in out


def test_bursts_compare_per_level(rows: list[dict[str, Any]]) -> None:
    """A burst's figures are compared level by level (N), never across levels."""
    one = _row(rows, bench="burst", size="N = 1", variant="server", figure="first_delta_p50_ms")
    ten = _row(rows, bench="burst", size="N = 10", variant="server", figure="first_delta_p50_ms")
    assert (one["old"], one["new"], one["verdict"]) == (280.0, 270.0, "better")
    assert (ten["old"], ten["new"], ten["verdict"]) == (560.0, 600.0, "worse")
    share = _row(rows, bench="burst", size="N = 1", variant="server", figure="share_p50_ms")
    assert share["verdict"] == "better"
    burst = [row for row in rows if row["bench"] == "burst"]
    assert [row["size"] for row in burst] == sorted(
        (row["size"] for row in burst), key=lambda size: int(size.split()[-1])
    )
