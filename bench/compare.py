"""What got better or worse between two saved runs (`--compare OLD.json`).

Each summary figure of a benchmark's table (the median over repeats of one variant, at one size)
is shown old → new, with whether the change is for the better: every figure has a direction
(latency, CPU and memory are better lower; tokens/s and connects/s higher). Figures that say
how the machine or the baselines behaved rather than the code (the simulator's CPU, run time)
are not compared, nor CPU per frame (merging tokens into fewer frames raises it, for the
better)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any, Literal

Direction = Literal["lower", "higher"]

# The figures compared, by benchmark, with the direction that is better. The order is the
# tables' order in docs/benchmarks.md.
FIGURES: dict[str, dict[str, Direction]] = {
    "stream": {
        "lat_p50_ms": "lower",
        "lat_p99_ms": "lower",
        "lat_max_ms": "lower",
        "first_delta_p50_ms": "lower",
        "first_delta_p99_ms": "lower",
        "ask_to_start_p50_ms": "lower",
        "ask_to_request_p50_ms": "lower",
        "tokens_per_s": "higher",
        "cpu_ms_per_1k_tokens": "lower",
        "lost": "lower",
        "unfinished": "lower",
    },
    "ttfd": {
        "ttfd_p50_ms": "lower",
        "ttfd_p99_ms": "lower",
        "share_p50_ms": "lower",
        "share_p99_ms": "lower",
        "share_warm_p50_ms": "lower",
        "start_p50_ms": "lower",
        "sources_gap_p50_ms": "lower",
        "lost": "lower",
    },
    "burst": {
        "first_delta_p50_ms": "lower",
        "first_delta_p90_ms": "lower",
        "start_p50_ms": "lower",
        "share_p50_ms": "lower",
        "share_warm_p50_ms": "lower",
        "lost": "lower",
    },
    "fanout": {
        "lat_p50_ms": "lower",
        "lat_p99_ms": "lower",
        "lat_max_ms": "lower",
        "cpu_ms_per_1k_deliveries": "lower",
        "presence_frames_per_member": "lower",
        "presence_kib_per_member": "lower",
        "lost": "lower",
    },
    "idle": {
        "kib_per_connection": "lower",
        "rss_full_mib": "lower",
        "rss_closed_mib": "lower",
        "rss_after_grace_mib": "lower",
        "connect_per_s": "higher",
        "idle_cpu_ms_per_s": "lower",
        "alive": "higher",
        "lost": "lower",
    },
    "storm": {
        "back_p50_s": "lower",
        "back_s": "lower",
        "connects_per_s": "higher",
        "cpu_ms_per_connect": "lower",
        "join_per_s": "higher",
        "back": "higher",
        "full_welcomes": "lower",
        "lost": "lower",
    },
}

# Changes smaller than this share of the old value are shown as "same": a figure that moved
# by less than 1% has not moved on this machine.
SAME_WITHIN = 0.01

Row = dict[str, Any]


def _key(run: dict[str, Any]) -> tuple[str, str, str]:
    """(benchmark, size, variant): the stream runs differ by answers per worker, the bursts by
    questions at once."""
    if "answers" in run:
        size = f"{run['answers']} answers"
    elif "n" in run:
        size = f"N = {run['n']}"
    else:
        size = ""
    return run["bench"], size, run["variant"]


def _medians(results: dict[str, Any]) -> dict[tuple[str, str, str, str], float]:
    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for run in results.get("runs", []):
        figures = FIGURES.get(run.get("bench", ""), {})
        for name in figures:
            value = run.get(name)
            if isinstance(value, int | float) and not math.isnan(value):
                values[(*_key(run), name)].append(float(value))
    return {key: statistics.median(found) for key, found in values.items() if found}


def verdict(old: float, new: float, direction: Direction) -> str:
    """ "better", "worse" or "same" for a figure that went from `old` to `new`."""
    if abs(new - old) <= SAME_WITHIN * abs(old) or new == old:
        return "same"
    improved = new < old if direction == "lower" else new > old
    return "better" if improved else "worse"


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Row]:
    """One row per figure present in both runs, and for ratios and goals of both summaries."""
    before, after = _medians(old), _medians(new)
    rows: list[Row] = []
    for key in sorted(before.keys() & after.keys(), key=_order):
        bench, size, variant, name = key
        direction = FIGURES[bench][name]
        rows.append(
            {
                "bench": bench,
                "size": size,
                "variant": variant,
                "figure": name,
                "old": before[key],
                "new": after[key],
                "verdict": verdict(before[key], after[key], direction),
            }
        )
    old_ratios = (old.get("summary") or {}).get("ratios", {})
    new_ratios = (new.get("summary") or {}).get("ratios", {})
    for name in sorted(old_ratios.keys() & new_ratios.keys()):
        a, b = old_ratios[name], new_ratios[name]
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            continue
        # A ratio is the server's figure over a baseline's, better lower but for throughput.
        direction: Direction = "higher" if "tokens_per_s" in name else "lower"
        rows.append(
            {
                "bench": "ratio",
                "size": "",
                "variant": "",
                "figure": name,
                "old": a,
                "new": b,
                "verdict": verdict(a, b, direction),
            }
        )
    old_goals = {g["goal"]: g["met"] for g in (old.get("summary") or {}).get("goals", [])}
    for goal in (new.get("summary") or {}).get("goals", []):
        if goal["goal"] in old_goals and old_goals[goal["goal"]] != goal["met"]:
            rows.append(
                {
                    "bench": "goal",
                    "size": "",
                    "variant": "",
                    "figure": goal["goal"],
                    "old": "met" if old_goals[goal["goal"]] else "missed",
                    "new": "met" if goal["met"] else "missed",
                    "verdict": "better" if goal["met"] else "worse",
                }
            )
    return rows


def _order(key: tuple[str, str, str, str]) -> tuple[int, int, str, int]:
    bench, size, variant, name = key
    benches = list(FIGURES)
    return benches.index(bench), _size_number(size), variant, list(FIGURES[bench]).index(name)


def _size_number(size: str) -> int:
    """The number in a size ("100 answers" and "N = 10" order by it; "" is 0)."""
    numbers = [int(word) for word in size.split() if word.isdigit()]
    return numbers[0] if numbers else 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _change(row: Row) -> str:
    old, new = row["old"], row["new"]
    if not isinstance(old, float) or not isinstance(new, float) or old == 0:
        return ""
    return f"{(new - old) / abs(old) * 100:+.0f}%"


def markdown(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The comparison as a table, with a count of what got better and worse."""
    rows = compare(old, new)
    counts = {v: sum(row["verdict"] == v for row in rows) for v in ("better", "worse", "same")}
    date = old.get("machine", {}).get("date", "?")
    out = [
        f"**Compared with {old.get('code', '?')}** (run of {date}, "
        f"load {_load(old)}) → {new.get('code', '?')} (load {_load(new)}): "
        f"{counts['better']} better, {counts['worse']} worse, {counts['same']} the same "
        f"(within {SAME_WITHIN:.0%}). Single runs on a shared machine are noisy.",
        "",
        "| benchmark | size | variant | figure | old | new | change | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mark = {"better": "better", "worse": "**worse**", "same": "same"}[row["verdict"]]
        out.append(
            f"| {row['bench']} | {row['size']} | {row['variant']} | {row['figure']} | "
            f"{_fmt(row['old'])} | {_fmt(row['new'])} | {_change(row)} | {mark} |"
        )
    if not rows:
        out.append("| (nothing measured in both runs) | | | | | | | |")
    return "\n".join(out) + "\n"


def _load(results: dict[str, Any]) -> str:
    before = results.get("load_before") or [math.nan]
    after = results.get("load_after") or [math.nan]
    return f"{before[0]:.1f} before, {after[0]:.1f} after"
