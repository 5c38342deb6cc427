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


# The steps of a WebSocket connect, each named by the functions that do it (a sample goes to
# the innermost of these on its stack, in any thread: the database thread's samples too); a
# sample in none of them goes to the layer of its leaf frame (LAYERS).
CONNECT_STEPS = (
    (
        "sending frames to daphne (accept, welcome, presence)",
        r"InstanceSessionWrapper\.send|AsyncConsumer\.send|Server\.handle_reply",
    ),
    ("welcome: build and queue", r"welcome \(chat/realtime/membership|welcome_frame"),
    ("hub: resume backlog (read_after) / snapshot", r"(read_after|snapshot) \(chat/realtime"),
    ("hub: subscribe the room", r"(_ensure_room|subscribe) \(chat/realtime"),
    ("presence: channel-layer group_add", r"watch_room \(chat/realtime"),
    ("presence: add the member and read the list (Redis)", r"presence_(add|join) \(chat/realtime"),
    ("presence: member list for the welcome", r"members \(chat/realtime"),
    ("presence: tell the room (group_send)", r"changed \(chat/realtime/presence"),
    ("presence: frames to members", r"(_push|schedule_push|push_later) \(chat/realtime/presence"),
    ("hub: join (catch-up, go live)", r"_?join \(chat/realtime/hub"),
    ("membership: join (other)", r"join \(chat/realtime/membership"),
    ("access check and room row (database)", r"access_and_room|chat/rooms/"),
    (
        "session and user (channels auth, database)",
        r"channels/auth\.py|channels/sessions\.py|contrib/sessions|contrib/auth",
    ),
    ("identity", r"chat/identity\.py"),
    ("outbox: writing frames to the socket", r"(_write_loop|_send_text) \(chat/"),
    ("leaving (A's members dropped)", r"(leave|disconnect|stop) \(chat/"),
    ("consumer: connect (the rest)", r"connect \(chat/consumers"),
    (
        "origin check, routing, consumer dispatch",
        r"config/origin|config/asgi|channels/routing|channels/consumer|channels/generic|channels/middleware",
    ),
)


def connect_steps(raw: Path) -> dict[str, float]:
    """Share (%) of the samples in each step of a connect (CONNECT_STEPS), the rest by the
    layer of their leaf frame; idle executor threads are not counted."""
    counts: Counter[str] = Counter()
    total = 0
    compiled = [(name, re.compile(rx)) for name, rx in CONNECT_STEPS]
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if "_worker (concurrent/futures/thread.py" in frames[-1] and len(frames) < 8:
            continue
        samples = int(count)
        total += samples
        step = None
        for frame in reversed(frames):
            step = next((name for name, rx in compiled if rx.search(frame)), None)
            if step is not None:
                break
        if step is None:
            layer = next((name for name, rx in LAYERS if re.search(rx, frames[-1])), "other")
            step = f"outside the consumer: {layer}"
        counts[step] += samples
    return {name: round(100 * n / total, 1) for name, n in counts.most_common()} if total else {}
