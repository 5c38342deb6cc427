"""The settled-idle benchmark still runs (`python -m bench.idle_settled`), at a tiny size: a real
worker on a throwaway Redis, its members connected and left idle. No timing is judged here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_settled_idle_benchmark_reads_the_workers_cpu() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.idle_settled",
            "--rooms",
            "3",
            "--per-room",
            "2",
            "--settle",
            "0.5",
            "--window",
            "0.5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    found = r"6 members in 3 rooms, the Redis log: idle CPU \d+\.\d ms/s"
    assert re.search(found, completed.stdout)
    assert "load average before" in completed.stdout and "load average after" in completed.stdout
