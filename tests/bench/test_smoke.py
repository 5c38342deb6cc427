"""The benchmarks still run: one tiny run of each (`python -m bench.run --quick`). Benchmarks
are not tests, so nothing here judges a timing; it checks that every benchmark produced
results and that no run lost a frame or a connection."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The quick run takes about two and a half minutes on a quiet machine; CI's machine, busy with
# the rest of the suite, has taken more than five (the old 300 s limit failed a whole CI run).
# The limit is only there so that a hung benchmark cannot hold CI to its 90 minutes.
QUICK_RUN_LIMIT = 900
BENCHES = {
    "latency": "stream",
    "cpu": "stream",
    "ttfd": "ttfd",
    "burst": "burst",
    "fanout": "fanout",
    "idle": "idle",
    "storm": "storm",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_LIMIT,
    )
    assert out.exists(), completed.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    data["stderr"] = completed.stderr[-3000:]
    return data


@pytest.mark.timeout(QUICK_RUN_LIMIT + 10)
@pytest.mark.parametrize("name", sorted(BENCHES))
def test_benchmark_ran_without_losing_anything(name: str, results: dict[str, Any]) -> None:
    """Each benchmark has runs for every variant, each with results and nothing lost."""
    # latency and cpu share their runs, and their errors are reported under "latency".
    step = "latency" if name == "cpu" else name
    failed = [error for error in results["errors"] if error["bench"] == step]
    assert not failed, (failed, results["stderr"])
    runs = [run for run in results["runs"] if run["bench"] == BENCHES[name]]
    assert runs, f"{name} produced no runs"
    for run in runs:
        assert run["lost"] == 0, run.get("problems")
    if name in ("latency", "cpu"):
        assert {run["variant"] for run in runs} == {"server", "relay", "direct"}
        assert all(run["tokens"] > 0 and run["lat_p99_ms"] >= 0 for run in runs)
    if name == "cpu":
        # CPU time has a 10 ms resolution: a tiny run may show none, but it must be measured.
        measured = [run for run in runs if run["variant"] != "direct"]
        assert all(run["cpu_ms_per_1k_tokens"] is not None for run in measured)
    if name == "ttfd":
        assert all(run["samples"] > 0 for run in runs)
        # Retrieval is timed after a pause and back to back; the share is split both ways.
        server = [run for run in runs if run["variant"] == "server"]
        assert all(
            run["retrieval_p50_ms"] > 0 and run["retrieval_warm_p50_ms"] > 0 for run in server
        )
        assert all(math.isfinite(run["share_warm_p50_ms"]) for run in server)
    if name == "burst":
        # Both variants at every level, each with first deltas and the level's floor.
        assert {(run["variant"], run["n"]) for run in runs} == {
            (variant, n)
            for variant in ("server", "direct")
            for n in results["sizes"]["burst_levels"]
        }
        assert all(run["samples"] == run["n"] * results["sizes"]["burst_rounds"] for run in runs)
        assert all(run["floor_ms"] > 0 and run["floor_warm_ms"] > 0 for run in runs)
        singles = [run for run in runs if run["n"] == 1 and run["variant"] == "server"]
        assert all(math.isfinite(run["share_p50_ms"]) for run in singles)
        assert all(math.isfinite(run["share_warm_p50_ms"]) for run in singles)
    if name == "fanout":
        assert all(run["deliveries"] == run["members"] * run["tokens_per_answer"] for run in runs)
        ran = {run["variant"] for run in runs}
        assert ran >= {"server-1w", "relay"}
        if "server-2w" not in ran:
            reasons = [s["reason"] for s in results["skipped"] if s["variant"] == "server-2w"]
            pytest.skip(f"two Redis workers not run: {reasons}")
    if name == "idle":
        assert all(run["alive"] == run["connections"] for run in runs)
    if name == "storm":
        # Every member of the killed worker came back (the server's resumed from its `after`).
        assert all(run["back"] == run["members"] == run["joined"] for run in runs)
        ran = {run["variant"] for run in runs}
        assert "relay" in ran
        server = [run for run in runs if run["variant"] == "server-2w"]
        if not server:
            reasons = [s["reason"] for s in results["skipped"] if s["variant"] == "server-2w"]
            pytest.skip(f"two Redis workers not run: {reasons}")
        assert all(run["resumed"] == run["members"] for run in server)
        assert all(run["full_welcomes"] == 0 for run in server)
