"""Results: medians over the interleaved repeats, ratios to the baselines, the goals, and the
Markdown tables of docs/benchmarks.md."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

START, END = "<!-- results:start -->", "<!-- results:end -->"

Run = dict[str, Any]


def _median(values: Iterable[float | None]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else math.nan


def _select(runs: list[Run], **match: Any) -> list[Run]:
    return [run for run in runs if all(run.get(k) == v for k, v in match.items())]


def _ratios(
    runs: list[Run], bench: str, metric: str, num: str, den: str, **match: Any
) -> list[float]:
    """Per repeat, `metric` of variant `num` over variant `den` (same repeat, same group)."""
    ratios = []
    for repeat in sorted({run["repeat"] for run in _select(runs, bench=bench, **match)}):
        a = _select(runs, bench=bench, variant=num, repeat=repeat, **match)
        b = _select(runs, bench=bench, variant=den, repeat=repeat, **match)
        if a and b and b[0].get(metric):
            ratios.append(a[0][metric] / b[0][metric])
    return ratios


def _goal_level(runs: list[Run]) -> int | None:
    """The stream level the latency goal is judged at: 100 answers, or the nearest run."""
    levels = sorted({run["answers"] for run in _select(runs, bench="stream")})
    return min(levels, key=lambda n: abs(n - 100)) if levels else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    runs: list[Run] = results["runs"]
    summary: dict[str, Any] = {"ratios": {}, "goals": []}
    for level in sorted({run["answers"] for run in _select(runs, bench="stream")}):
        for metric in ("lat_p50_ms", "lat_p99_ms"):
            for den in ("relay", "direct"):
                values = _ratios(runs, "stream", metric, "server", den, answers=level)
                summary["ratios"][f"stream {level} {metric} server/{den}"] = _median(values)
        for metric in ("cpu_ms_per_1k_tokens", "tokens_per_s"):
            values = _ratios(runs, "stream", metric, "server", "relay", answers=level)
            summary["ratios"][f"stream {level} {metric} server/relay"] = _median(values)
    goals = summary["goals"]
    level = _goal_level(runs)
    if level is not None:
        goals.append(_latency_goal(runs, summary["ratios"], level))
        below = [
            n
            for n in sorted({r["answers"] for r in _select(runs, bench="stream")})
            if 1 < n < level
        ]
        if below:
            goals.append(_latency_goal(runs, summary["ratios"], below[-1], note=" (information)"))
    lossy = [run for run in runs if run["bench"] in ("stream", "ttfd", "burst", "fanout")]
    if lossy:
        lost = sum(run.get("lost", 0) for run in lossy)
        unfinished = sum(run.get("unfinished", 0) for run in lossy)
        late = f"; {unfinished} answers unfinished at the client's timeout" if unfinished else ""
        goals.append(
            {
                "goal": "no frame lost or out of order in any run",
                "measured": f"{lost} answers with a problem in {len(lossy)} runs{late}",
                "met": lost == 0,
            }
        )
    goals += _cpu_goals(summary["ratios"])
    fanouts = (("server-2w", "the room quiet"), ("server-2w-joining", "members joining"))
    for variant, when in fanouts:
        fanout = _select(runs, bench="fanout", variant=variant)
        if fanout:
            p99 = _median(run["lat_p99_ms"] for run in fanout)
            members = fanout[0]["members"]
            goal = f"fan-out p99 ≤ 20 ms ({members} members, 2 workers, Redis; {when})"
            goals.append(_goal(goal, p99, 20, " ms"))
    idle = _select(runs, bench="idle", variant="server")
    if idle:
        kib = _median(run["kib_per_connection"] for run in idle)
        goals.append(_goal("≤ 25 KiB per idle connection", kib, 25, " KiB"))
        back = _median(run["rss_after_grace_mib"] / run["rss_warm_mib"] for run in idle)
        connections, rooms = idle[0]["connections"], idle[0].get("rooms", "?")
        goal = _goal(
            f"RSS back within 10% of warm after {connections} connections in {rooms} rooms close",
            (back - 1) * 100,
            10,
            " % over warm",
        )
        goals.append(goal)
    goals += _storm_goals(runs)
    ttfd = _select(runs, bench="ttfd", variant="server")
    if ttfd:
        share = _median(run["share_p50_ms"] for run in ttfd)
        goals.append(_goal("server's share of time to first delta < 5 ms at p50", share, 5, " ms"))
    goals += _burst_goals(runs)
    return summary


def _cpu_goals(ratios: dict[str, float]) -> list[dict[str, Any]]:
    """The speed issue's goal 3: CPU per token at 100 answers per worker at most 1.1x the
    relay's, and tokens per second delivered at 100 and 500 answers at least the relay's (each
    the median of the per-repeat ratios)."""
    goals = []
    cpu = ratios.get("stream 100 cpu_ms_per_1k_tokens server/relay")
    if cpu is not None:
        goals.append(_goal("CPU per token ≤ 1.1x the relay's at 100 answers/worker", cpu, 1.1, "x"))
    for level in (100, 500):
        rate = ratios.get(f"stream {level} tokens_per_s server/relay")
        if rate is not None:
            met = not math.isnan(rate) and rate >= 1.0
            goals.append(
                {
                    "goal": f"tokens/s delivered ≥ the relay's at {level} answers/worker",
                    "measured": f"{_fmt(rate, 2)}x the relay's",
                    "met": met,
                }
            )
    return goals


def _latency_goal(
    runs: list[Run], ratios: dict[str, float], level: int, note: str = ""
) -> dict[str, Any]:
    """The p99 ratio to the relay, judged only if the server did the same work: a server that
    delivers fewer tokens per second than the relay starts answers late instead of streaming
    them, which makes its per-delta latency look better than it is."""
    ratio = ratios.get(f"stream {level} lat_p99_ms server/relay", math.nan)
    goal = _goal(
        f"p99 added latency ≤ 1.5x the relay's at {level} answers/worker{note}", ratio, 1.5, "x"
    )
    at_level = _select(runs, bench="stream", answers=level)
    rate = {
        variant: _median(r["tokens_per_s"] for r in _select(at_level, variant=variant))
        for variant in ("server", "relay")
    }
    goal["measured"] += (
        f"; delivered {_fmt(rate['server'])} tokens/s (relay {_fmt(rate['relay'])}) "
        f"of {_fmt(at_level[0].get('offered_tokens_per_s'))} offered"
    )
    if goal["met"] and rate["server"] < 0.9 * rate["relay"]:
        goal["met"] = False
        goal["measured"] += ": the server did not keep up with the relay"
    return goal


def _goal(goal: str, measured: float, limit: float, unit: str) -> dict[str, Any]:
    met = not math.isnan(measured) and measured <= limit
    by = "" if met or math.isnan(measured) else f" ({measured / limit:.1f}x the goal)"
    return {"goal": goal, "measured": f"{_fmt(measured)}{unit}{by}", "met": met}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _spread(runs: list[Run], metric: str) -> str:
    """Median, and the range over repeats when there are several."""
    values = [run[metric] for run in runs if run.get(metric) is not None]
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    middle = _fmt(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({_fmt(min(values))}-{_fmt(max(values))})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _groups(runs: list[Run], bench: str, key: Callable[[Run], Any]) -> dict[Any, list[Run]]:
    grouped: dict[Any, list[Run]] = defaultdict(list)
    for run in _select(runs, bench=bench):
        grouped[key(run)].append(run)
    return dict(sorted(grouped.items(), key=lambda item: str(item[0])))


def markdown(results: dict[str, Any]) -> str:
    runs: list[Run] = results["runs"]
    summary = results.get("summary") or summarize(results)
    m = results["machine"]
    out = [
        f"Run of {m['date']} on {m['cpus']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}; {results['repeat']} interleaved repeat(s)"
        f"{', quick sizes' if results['quick'] else ''}; load average "
        f"{results['load_before'][0]:.1f} before, {results.get('load_after', [math.nan])[0]:.1f} "
        f"after (other work on the machine). Code: {results.get('code', '?')}. "
        "Cells: median over repeats (min-max).",
        "",
    ]
    out += _stream_tables(runs, summary)
    out += _ttfd_table(runs, results)
    out += _burst_tables(runs)
    out += _fanout_table(runs)
    out += _idle_table(runs)
    out += _storm_table(runs)
    profile = results.get("info", {}).get("latency.profile")
    if profile:
        out += _profile_lines(profile)
    for fanout_profile in results.get("info", {}).get("fanout.profiles", []):
        for worker, found in fanout_profile.get("workers", {}).items():
            out += _profile_lines({**found, "what": f"{fanout_profile['variant']}, {worker}"})
    storm_profile = results.get("info", {}).get("storm.profile")
    if storm_profile:
        out += _storm_profile_lines(storm_profile)
    for skipped in results.get("skipped", []):
        out.append(f"Not run: {skipped['bench']} {skipped['variant']}: {skipped['reason']}.")
        out.append("")
    for error in results.get("errors", []):
        out.append(f"**Failed:** {error['bench']}: `{error['error']}`")
        out.append("")
    if summary["goals"]:
        out.append("**Goals**")
        out.append("")
        rows = [
            [g["goal"], g["measured"], "met" if g["met"] else "**missed**"]
            for g in summary["goals"]
        ]
        out += _table(["goal", "measured", ""], rows)
    return "\n".join(out)


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    if "error" in profile:
        return [f"Profile: {profile['error']}.", ""]
    what = profile.get("what") or f"at {profile['answers']} answers"
    out = [
        f"**Where the server's CPU goes** {what} (py-spy, share of "
        "samples by the layer of the running function)",
        "",
    ]
    out += _table(["layer", "%"], [[k, _fmt(v)] for k, v in profile["layers"].items()])
    out += _table(
        ["most often on the stack (inclusive)", "%"],
        [[f"`{f}`", _fmt(v)] for f, v in profile["top"]],
    )
    return out


def _stream_tables(runs: list[Run], summary: dict[str, Any]) -> list[str]:
    groups = _groups(runs, "stream", lambda r: (r["answers"], r["variant"]))
    if not groups:
        return []
    out = ["**Added latency per delta** (simulator sends a token → client receives it), ms", ""]
    rows = []
    for (answers, variant), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "server")
    ):
        rows.append(
            [
                str(answers),
                variant,
                _spread(group, "lat_p50_ms"),
                _spread(group, "lat_p99_ms"),
                _spread(group, "lat_max_ms"),
                _spread(group, "tokens_per_frame"),
                _spread(group, "tokens_per_s"),
                _spread(group, "window_s"),
                str(sum(r["lost"] for r in group)),
                str(sum(r.get("unfinished", 0) for r in group)),
            ]
        )
    out += _table(
        [
            "answers/worker",
            "variant",
            "p50",
            "p99",
            "max",
            "tokens/frame",
            "tokens/s",
            "window s",
            "lost",
            "unfinished",
        ],
        rows,
    )
    ratio_rows = [
        [key.replace("stream ", "").replace("lat_", "").replace("_ms", ""), _fmt(value, 2)]
        for key, value in summary["ratios"].items()
    ]
    out += _table(["ratio (median of per-repeat ratios)", "value"], ratio_rows)
    out += [
        "**Under load**: time from ask to first delta (an overloaded server starts answers "
        "late, which the per-delta latency above does not show), and delivered tokens/s",
        "",
    ]
    rows = [
        [
            str(answers),
            variant,
            _spread(group, "first_delta_p50_ms"),
            _spread(group, "first_delta_p99_ms"),
            _spread(group, "ask_to_start_p50_ms"),
            _spread(group, "ask_to_request_p50_ms"),
            _spread(group, "tokens_per_s"),
            _fmt(group[0].get("offered_tokens_per_s")),
        ]
        for (answers, variant), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "server")
        )
    ]
    out += _table(
        [
            "answers/worker",
            "variant",
            "first delta p50",
            "first delta p99",
            "ask → answer.start p50",
            "ask → LLM request p50",
            "tokens/s",
            "offered",
        ],
        rows,
    )
    out += ["**CPU time per 1,000 delivered deltas** (tokens), process under test", ""]
    rows = []
    for (answers, variant), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "server")
    ):
        rows.append(
            [
                str(answers),
                variant,
                _spread(group, "cpu_ms_per_1k_tokens"),
                _spread(group, "cpu_ms_per_1k_frames"),
                _spread(group, "simulator_cpu_s"),
                _spread(group, "client_cpu_s"),
                _spread(group, "duration_s"),
            ]
        )
    out += _table(
        [
            "answers/worker",
            "variant",
            "CPU ms / 1k tokens",
            "CPU ms / 1k frames",
            "simulator CPU s",
            "clients CPU s",
            "run s",
        ],
        rows,
    )
    return out


def _ttfd_table(runs: list[Run], results: dict[str, Any]) -> list[str]:
    groups = _groups(runs, "ttfd", lambda r: r["variant"])
    if not groups:
        return []
    out = ["**Time to first delta**, ms (one question at a time)", ""]
    rows = [
        [
            variant,
            _spread(group, "ttfd_p50_ms"),
            _spread(group, "ttfd_p99_ms"),
            _spread(group, "retrieval_p50_ms"),
            _spread(group, "llm_p50_ms"),
            _spread(group, "share_p50_ms"),
            _spread(group, "share_p99_ms"),
            _spread(group, "retrieval_warm_p50_ms") if variant == "server" else "",
            _spread(group, "share_warm_p50_ms") if variant == "server" else "",
            _spread(group, "start_p50_ms"),
            _spread(group, "sources_gap_p50_ms"),
        ]
        for variant, group in sorted(groups.items(), key=lambda kv: kv[0] != "server")
    ]
    return out + _table(
        [
            "variant",
            "TTFD p50",
            "TTFD p99",
            "retrieval p50 (after a pause)",
            "LLM first token p50",
            "own share p50",
            "own share p99",
            "retrieval p50 (back to back)",
            "own share p50 (against back to back)",
            "ask → answer.start p50",
            "answer.start → sources p50",
        ],
        rows,
    )


def _burst_gaps(runs: list[Run]) -> dict[int, tuple[float, float, float]]:
    """Per N: the server's first-delta p50 minus the direct client's, the floor (embedding the
    N questions in one batch, measured before each repeat) and their ratio, each the median
    over repeats (the ratio per repeat, against that repeat's floor)."""
    gaps: dict[int, tuple[float, float, float]] = {}
    for n in sorted({run["n"] for run in _select(runs, bench="burst")}):
        differences, ratios = [], []
        for repeat in sorted({run["repeat"] for run in _select(runs, bench="burst", n=n)}):
            server = _select(runs, bench="burst", n=n, repeat=repeat, variant="server")
            direct = _select(runs, bench="burst", n=n, repeat=repeat, variant="direct")
            if server and direct:
                gap = server[0]["first_delta_p50_ms"] - direct[0]["first_delta_p50_ms"]
                differences.append(gap)
                if server[0]["floor_ms"]:
                    ratios.append(gap / server[0]["floor_ms"])
        floor = _median(run["floor_ms"] for run in _select(runs, bench="burst", n=n))
        gaps[n] = (_median(differences), floor, _median(ratios))
    return gaps


def _burst_goals(runs: list[Run]) -> list[dict[str, Any]]:
    """First delta under a burst: server p50 - direct p50 within 1.2x the floor at every N,
    and the server's own share at N = 1 at most 5 ms."""
    goals = []
    for n, (gap, floor, ratio) in _burst_gaps(runs).items():
        goals.append(
            {
                "goal": f"burst of {n}: server first-delta p50 - direct p50 ≤ 1.2x the floor",
                "measured": f"{_fmt(gap)} ms against a floor of {_fmt(floor)} ms "
                f"({_fmt(ratio, 2)}x)",
                "met": not math.isnan(ratio) and ratio <= 1.2,
            }
        )
    single = _select(runs, bench="burst", n=1, variant="server")
    if single:
        share = _median(run["share_p50_ms"] for run in single)
        goals.append(_goal("burst of 1: the server's own share ≤ 5 ms at p50", share, 5, " ms"))
    return goals


def _burst_tables(runs: list[Run]) -> list[str]:
    groups = _groups(runs, "burst", lambda r: (r["n"], r["variant"]))
    if not groups:
        return []
    out = [
        "**First delta under a burst**, ms: N distinct questions at once, each in a room of "
        "its own, real retrieval over `knowledge/`",
        "",
    ]
    rows = [
        [
            str(n),
            variant,
            _spread(group, "first_delta_p50_ms"),
            _spread(group, "first_delta_p90_ms"),
            _spread(group, "start_p50_ms"),
            _spread(group, "llm_p50_ms"),
            _spread(group, "retrieval_p50_ms") if n == 1 and variant == "server" else "",
            _spread(group, "share_p50_ms") if n == 1 and variant == "server" else "",
            _spread(group, "share_warm_p50_ms") if n == 1 and variant == "server" else "",
            str(sum(r["samples"] for r in group)),
            str(sum(r["lost"] for r in group)),
        ]
        for (n, variant), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "server")
        )
    ]
    out += _table(
        [
            "N",
            "variant",
            "first delta p50",
            "first delta p90",
            "ask → answer.start p50",
            "LLM first token p50",
            "retrieval p50 (alone, after a pause)",
            "own share p50",
            "own share p50 (against retrieval back to back)",
            "samples",
            "lost",
        ],
        rows,
    )
    rows = [
        [
            str(n),
            _fmt(gap),
            _fmt(floor),
            _fmt(ratio, 2),
            "met" if ratio <= 1.2 else "**missed**",
            _fmt(_median(run.get("floor_warm_ms") for run in _select(runs, bench="burst", n=n))),
        ]
        for n, (gap, floor, ratio) in _burst_gaps(runs).items()
    ]
    out += _table(
        [
            "N",
            "server p50 - direct p50",
            "floor: N questions embedded in one batch (after a pause)",
            "gap / floor (per repeat)",
            "≤ 1.2x",
            "floor back to back",
        ],
        rows,
    )
    return out


def _fanout_table(runs: list[Run]) -> list[str]:
    groups = _groups(runs, "fanout", lambda r: r["variant"])
    if not groups:
        return []
    out = ["**Fan-out**: one answer to every member of a room, delivery latency in ms", ""]
    rows = [
        [
            variant,
            _spread(group, "members"),
            _spread(group, "lat_p50_ms"),
            _spread(group, "lat_p99_ms"),
            _spread(group, "lat_max_ms"),
            str(sum(r["lost"] for r in group)),
            _spread(group, "cpu_ms_per_1k_deliveries"),
            _spread(group, "presence_frames_per_member"),
            _spread(group, "presence_kib_per_member"),
            _spread(group, "presence_until_s"),
            _spread(group, "worst_sent_at_s"),
        ]
        for variant, group in groups.items()
    ]
    return out + _table(
        [
            "variant",
            "members",
            "p50",
            "p99",
            "max",
            "lost",
            "CPU ms / 1k deliveries",
            "presence frames / member",
            "presence KiB / member",
            "last presence, s after the ask",
            "slowest 1% sent, s after the ask",
        ],
        rows,
    )


def _idle_table(runs: list[Run]) -> list[str]:
    groups = _groups(runs, "idle", lambda r: r["variant"])
    if not groups:
        return []
    out = ["**Idle connections** on one fresh process", ""]
    rows = [
        [
            variant,
            _spread(group, "connections"),
            _spread(group, "alive"),
            _spread(group, "kib_per_connection"),
            _spread(group, "rss_warm_mib"),
            _spread(group, "rss_full_mib"),
            _spread(group, "rss_closed_mib"),
            _spread(group, "rss_after_grace_mib"),
            _spread(group, "connect_per_s"),
            _spread(group, "idle_cpu_ms_per_s"),
        ]
        for variant, group in groups.items()
    ]
    return out + _table(
        [
            "variant",
            "connections",
            "alive at the end",
            "KiB / connection",
            "RSS warm MiB",
            "RSS full MiB",
            "RSS after close MiB",
            "RSS after the rooms' grace MiB",
            "connects / s",
            "idle CPU ms / s",
        ],
        rows,
    )


def _storm_goals(runs: list[Run]) -> list[dict[str, Any]]:
    """The reconnect storm's goals: everyone back within 5 s, nothing lost or repeated, and
    connects per second on the one worker at least half the relay's."""
    server = _select(runs, bench="storm", variant="server-2w")
    if not server:
        return []
    members, rooms = server[0]["members"], server[0]["rooms"]
    back = _median(run["back_s"] for run in server)
    goals = [
        _goal(f"{members} members in {rooms} rooms back on worker B after A died", back, 5, " s")
    ]
    lost = sum(run["lost"] for run in server)
    full = sum(run["full_welcomes"] for run in server)
    goals.append(
        {
            "goal": "reconnect storm: no event lost or repeated, every member resumed",
            "measured": f"{lost} members with a problem, {full} full welcomes "
            f"in {len(server)} runs",
            "met": lost == 0 and full == 0,
        }
    )
    ratios = _ratios(runs, "storm", "connects_per_s", "server-2w", "relay")
    if ratios:
        ratio = _median(ratios)
        rate = _median(run["connects_per_s"] for run in server)
        relay = _median(
            run["connects_per_s"] for run in _select(runs, bench="storm", variant="relay")
        )
        goals.append(
            {
                "goal": "connects/s on one worker ≥ half the relay's (reconnect storm)",
                "measured": f"{_fmt(rate)}/s against {_fmt(relay)}/s: {ratio:.2f}x",
                "met": ratio >= 0.5,
            }
        )
    return goals


def _storm_table(runs: list[Run]) -> list[str]:
    groups = _groups(runs, "storm", lambda r: r["variant"])
    if not groups:
        return []
    out = [
        "**Reconnect storm**: worker A killed, every member back on worker B at once "
        "(the server: with `after=`)",
        "",
    ]
    rows = [
        [
            variant,
            _spread(group, "members"),
            _spread(group, "rooms"),
            _spread(group, "back"),
            _spread(group, "back_p50_s"),
            _spread(group, "back_s"),
            _spread(group, "connects_per_s"),
            _spread(group, "cpu_ms_per_connect"),
            _spread(group, "join_per_s"),
            str(sum(run["full_welcomes"] for run in group)),
            str(sum(run["lost"] for run in group)),
        ]
        for variant, group in groups.items()
    ]
    return out + _table(
        [
            "variant",
            "members",
            "rooms",
            "back",
            "half back, s after the kill",
            "all back, s",
            "connects / s",
            "CPU ms / connect (B)",
            "first joins / s (32 at a time per client process)",
            "full welcomes",
            "lost",
        ],
        rows,
    )


def _storm_profile_lines(profile: dict[str, Any]) -> list[str]:
    if "error" in profile:
        return [f"Storm profile: {profile['error']}.", ""]
    out = [
        f"**Where worker B's time goes in the storm** ({profile['members']} reconnects; py-spy, "
        "share of samples by the step of a connect on the stack, else by the leaf's layer)",
        "",
    ]
    out += _table(["step", "%"], [[k, _fmt(v)] for k, v in profile["steps"].items()])
    return out


def update_doc(
    path: Path,
    text: str,
    *,
    markers: tuple[str, str] = (START, END),
    heading: str = "Latest results",
) -> None:
    """Replace the section of `path` between `markers` (the results', by default), creating
    it (under `heading`) if needed."""
    start, end = markers
    block = f"{start}\n{text.rstrip()}\n{end}"
    if not path.exists():
        path.write_text(f"# Benchmarks\n\n## {heading}\n\n{block}\n")
        return
    doc = path.read_text()
    if start in doc and end in doc:
        head, _, rest = doc.partition(start)
        _, _, tail = rest.partition(end)
        path.write_text(f"{head}{block}{tail}")
    else:
        path.write_text(f"{doc.rstrip()}\n\n## {heading}\n\n{block}\n")


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.report RESULTS.json [--out FILE.md] [--compare OLD.json]`: render saved
    results again, and what got better or worse since OLD."""
    import argparse
    import json

    from bench import compare

    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="a .md file to update")
    parser.add_argument("--compare", type=Path, default=None, metavar="OLD.json")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    results["summary"] = summarize(results)
    text = markdown(results)
    if args.out is not None:
        update_doc(args.out, text)
    print(text)
    if args.compare is not None:
        old = json.loads(args.compare.read_text())
        old.setdefault("summary", summarize(old))
        print(compare.markdown(old, results))


if __name__ == "__main__":
    main()
