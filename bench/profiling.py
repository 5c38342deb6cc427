"""`--profile`: sample the chat server with py-spy during a stream run, and say where its CPU
time goes, by layer (the leaf frame of each sample decides its layer).

py-spy is not a dependency of the project: `pip install py-spy` (it attaches with ptrace, so
it needs the right to trace the server process, which root or the same user has here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from bench.procs import BIN

# (layer, pattern of the leaf frame's file); the first that matches wins.
LAYERS = (
    (
        "LLM client (openai SDK, httpx2, httpcore2, anyio, h11)",
        r"openai/|httpx2/|httpcore2/|anyio/|h11/|pydantic|typing\.py|typing_extensions|inspect\.py",
    ),
    (
        "database (Django ORM, sqlite3/psycopg, thread hops)",
        r"django/db|sqlite3|psycopg|asgiref/|channels/db\.py|concurrent/futures",
    ),
    ("WebSocket send (daphne, autobahn, twisted)", r"daphne/|autobahn/|twisted/|txaio/|zope/"),
    ("Redis client", r"redis/"),
    ("channels consumer", r"channels/"),
    ("chat code", r"chat/"),
    ("json", r"json/"),
    ("asyncio loop and selectors", r"asyncio/|selectors\.py"),
)


def py_spy() -> str | None:
    found = BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Record `pid` for `seconds` into `out` (py-spy's raw collapsed stacks), or None."""
    binary = py_spy()
    if binary is None:
        return None
    argv = [binary, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "100"]
    argv += ["-f", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def layers(raw: Path) -> dict[str, float]:
    """Share (%) of the samples whose leaf frame is in each layer; idle executor threads
    (waiting for work) are not counted."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if "_worker (concurrent/futures/thread.py" in leaf and len(frames) < 8:
            continue  # an executor thread waiting for work
        samples = int(count)
        total += samples
        layer = next((name for name, rx in LAYERS if re.search(rx, leaf)), None)
        counts[layer or "other"] += samples
    return {name: round(100 * n / total, 1) for name, n in counts.most_common()} if total else {}


def top_functions(raw: Path, limit: int = 15) -> list[tuple[str, float]]:
    """The functions most often on the stack (inclusive share, %), without line numbers."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        for frame in {re.sub(r":\d+\)$", ")", f) for f in stack.split(";")}:
            counts[frame] += samples
    skip = (
        "run_forever",
        "_run_once",
        "Handle._run",
        "<module>",
        "entrypoint",
        "cli.py",
        "Thread.",
    )
    ranked = [(f, n) for f, n in counts.most_common() if not any(s in f for s in skip)]
    return [(f, round(100 * n / total, 1)) for f, n in ranked[:limit]] if total else []
