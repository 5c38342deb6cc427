"""The reaper's look benchmark still runs (`python -m bench.reaper_look`): both ways of looking
agree (it checks before it times) and each prints its row. No timing is judged here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reaper_look_benchmark_times_both_ways() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.reaper_look", "--rooms", "3,7", "--looks", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = [line.split("|")[1:3] for line in completed.stdout.splitlines() if line[:4] == "| 3 "]
    rows += [line.split("|")[1:3] for line in completed.stdout.splitlines() if line[:4] == "| 7 "]
    assert [(rooms.strip(), way.strip()) for rooms, way in rows] == [
        ("3", "room by room"),
        ("3", "together"),
        ("7", "room by room"),
        ("7", "together"),
    ]
    assert "load average before" in completed.stdout and "load average after" in completed.stdout
