"""What the soak watches grow, or not: each worker's RSS, open files, threads and CPU; Redis'
memory and keys, per room (the room log's keys, stream entries, answers' texts, presence
entries) and the rest; PostgreSQL connections of the soak's database. `flatness` compares the
steady part of the run's thirds."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.procs import Proc
from bench.procstat import cpu_seconds, rss_bytes

_MIB = 1024 * 1024


def open_files(pid: int) -> tuple[int, int]:
    """(open files, of which sockets) of `pid`."""
    folder = f"/proc/{pid}/fd"
    total = sockets = 0
    for name in os.listdir(folder):
        try:
            target = os.readlink(f"{folder}/{name}")
        except OSError:
            continue  # closed meanwhile
        total += 1
        sockets += target.startswith("socket:")
    return total, sockets


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def worker_sample(proc: Proc) -> dict[str, float]:
    files, sockets = open_files(proc.pid)
    return {
        "rss_mib": rss_bytes(proc.pid) / _MIB,
        "open_files": files,
        "sockets": sockets,
        "threads": threads(proc.pid),
        "cpu_s": cpu_seconds(proc.pid),
    }


def redis_sample(client: redis.Redis, rooms: list[str]) -> dict[str, float]:
    """Keys by kind (one SCAN of our own Redis), per room averages, presence entries."""
    kinds: Counter[str] = Counter()
    for key in client.scan_iter(count=1000):
        name = key.decode(errors="replace")
        if name.startswith("chat:room:"):
            tail = name.rsplit("}:", 1)[-1]
            kinds["room:" + ("text" if tail.startswith("text:") else tail)] += 1
        else:
            kinds[":".join(name.split(":")[:2])] += 1
    with client.pipeline(transaction=False) as pipe:
        for room in rooms:
            pipe.xlen(f"chat:room:{{{room}}}:log")
            pipe.hlen(f"chat:presence:{room}")
            pipe.scard(f"chat:room:{{{room}}}:live")
        replies = pipe.execute()
    stream = replies[0::3]
    presence = [max(0, n - 1) for n in replies[1::3]]  # the hash's "#n" counter is no member
    live = replies[2::3]
    room_keys = sum(n for kind, n in kinds.items() if kind.startswith("room:"))
    memory = client.info("memory")
    return {
        "used_memory_mib": memory["used_memory"] / _MIB,
        "keys": sum(kinds.values()),
        "room_keys_per_room": room_keys / max(1, len(rooms)),
        "answer_texts": kinds["room:text"],
        "log_entries_per_room": sum(stream) / max(1, len(rooms)),
        "presence_entries": sum(presence),
        "live_answers": sum(live),
        "key_kinds": dict(kinds),  # type: ignore[dict-item]
    }


def presence_by_room(client: redis.Redis, rooms: list[str]) -> dict[str, int]:
    with client.pipeline(transaction=False) as pipe:
        for room in rooms:
            pipe.hlen(f"chat:presence:{room}")
        return {room: max(0, n - 1) for room, n in zip(rooms, pipe.execute(), strict=True)}


def postgres_connections(database_url: str) -> int:
    import psycopg

    name = database_url.rsplit("/", 1)[-1]
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres") as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


# What `flatness` looks at: (sample path, label, unit, slack). A metric is flat when its change
# is within the tolerance (a fraction) or within `slack` units; with slack None it is shown
# but not judged (it follows the members connected, which churn moves).
METRICS: tuple[tuple[str, str, str, float | None], ...] = (
    ("worker-0.rss_mib", "worker 0 RSS", "MiB", 0.0),
    ("worker-1.rss_mib", "worker 1 RSS", "MiB", 0.0),
    ("worker-0.open_files", "worker 0 open files", "", None),
    ("worker-1.open_files", "worker 1 open files", "", None),
    ("worker-0.files_beyond_members", "worker 0 open files beyond its members' sockets", "", 5),
    ("worker-1.files_beyond_members", "worker 1 open files beyond its members' sockets", "", 5),
    ("worker-0.threads", "worker 0 threads", "", 1),
    ("worker-1.threads", "worker 1 threads", "", 1),
    ("redis.used_memory_mib", "Redis memory", "MiB", 1),
    ("redis.room_keys_per_room", "Redis keys per room", "", 1),
    ("redis.log_entries_per_room", "room log entries per room", "", 0.0),
    ("redis.answer_texts", "answers' text keys (answers being written)", "", 5),
    ("redis.keys", "Redis keys, all", "", 10),
    ("redis.presence_entries", "presence entries", "", None),
    # Members connected come from reports at most 2 s old: a few units of noise, no more.
    ("redis.presence_beyond_members", "presence entries beyond the members connected", "", 2),
    ("clients.connected", "members connected", "", None),
    ("postgres.connections", "PostgreSQL connections", "", 2),
)


def value(sample: dict[str, Any], path: str) -> float | None:
    node: Any = sample
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def flatness(
    samples: list[dict[str, Any]], *, after: float, until: float, tolerance: float
) -> list[dict[str, Any]]:
    """For each metric, the samples taken between `after` and `until` seconds, in thirds:
    the middle third's mean against the last third's (the change), and the slope of a
    least-squares line over all of them, per hour. Flat: see METRICS."""
    steady = [s for s in samples if after <= s["t"] <= until]
    rows = []
    for path, label, unit, slack in METRICS:
        points = [(s["t"], v) for s in steady if (v := value(s, path)) is not None]
        row: dict[str, Any] = {
            "metric": path,
            "label": label,
            "unit": unit,
            "samples": len(points),
            "judged": slack is not None,
        }
        if len(points) >= 3:
            third = len(points) // 3
            middle = [v for _, v in points[third : 2 * third]]
            last = [v for _, v in points[2 * third :]]
            first_value = points[0][1]
            mid, end = statistics.fmean(middle), statistics.fmean(last)
            change = (end - mid) / mid if mid else (0.0 if end == mid else float("inf"))
            row.update(
                first=first_value,
                middle_mean=mid,
                last_mean=end,
                change=change,
                slope_per_hour=_slope(points) * 3600,
                flat=abs(change) <= tolerance or abs(end - mid) <= (slack or 0.0),
            )
        rows.append(row)
    return rows


def _slope(points: list[tuple[float, float]]) -> float:
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def verdict(
    samples: list[dict[str, Any]], *, after: float, until: float, tolerance: float
) -> dict[str, Any]:
    """`flatness` and what it concludes: flat when every judged metric is."""
    rows = flatness(samples, after=after, until=until, tolerance=tolerance)
    not_flat = [row["label"] for row in rows if row["judged"] and not row.get("flat", True)]
    return {"flatness": rows, "flat": not not_flat, "not_flat": not_flat}
