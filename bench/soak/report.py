"""The soak's results as Markdown (the summary printed at the end, and the section of
docs/benchmarks.md between the `soak` markers) and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report as bench_report
from bench.soak import resources
from bench.soak.tracker import MEMBER_KINDS, ROOM_KINDS
from bench.soak.verify import DB_KINDS

MARKERS = ("<!-- soak:start -->", "<!-- soak:end -->")

KIND_TEXT = {
    "gap": "a member's seqs skipped one (an event lost)",
    "repeat": "a member got a seq again",
    "reorder": "a member got a seq after a later one",
    "event_before_welcome": "an event before the welcome",
    "resume_seq_mismatch": "a resumed welcome's seq is not the `after` sent",
    "welcome_went_back": "a full welcome on a resume went back",
    "history_mismatch": "a welcome's history differs from the events",
    "text_mismatch": "an answer's deltas joined differ from its `answer.end` text",
    "delta_before_sources": "a delta before `answer.sources`",
    "delta_of_unknown_answer": "an answer event of an answer the member never had",
    "event_after_end": "an answer event after that answer's end",
    "seq_conflict": "two members got different events under one seq",
    "start_twice": "an answer started twice",
    "end_twice": "an answer ended twice",
    "unended": "an answer never ended",
    "unanswered": "a posted question never got an answer",
    "behind_at_end": "a member still behind its room at the end",
    "not_complete": "an answer ended other than `complete` (nothing here makes one fail)",
    "db_missing": "an answer members saw end has no database row",
    "db_status": "the row's status differs from the end members saw",
    "db_text": "the row's text differs from the end members saw",
    "db_end_seq": "the row's end seq differs",
    "db_streaming": "a row left `streaming`",
    "db_unseen_answer": "an answer row no member saw",
    "question_stored_not_posted": "a question stored but never posted to the room",
    "room_seq_mismatch": "Redis' room seq differs from the last seq members saw",
    "presence_left": "presence entries left after everyone closed (ghosts)",
    "live_answer_left": "live answers left in the room log",
}
ALL_KINDS = (*MEMBER_KINDS, *ROOM_KINDS, *DB_KINDS)


def _n(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    size, machine = results["size"], results["machine"]
    load_before, load_after = results["load_before"], results.get("load_after") or [0, 0, 0]
    cuts = results.get("cuts", [])
    cut_text = (
        f"{len(cuts)} Redis cut(s) of {_n(size['redis_cut_seconds'])} s every "
        f"{_n(size['redis_cut_every'])} s"
        if size["redis_cut_every"]
        else "no Redis cut"
    )
    lines = [
        f"Soak of {machine['date']} on {machine['cpus']} cores ({machine['cpu_model']}), "
        f"{machine['ram_gib']} GiB RAM, Python {machine['python']}; code {results['code']}. "
        f"{_n(size['minutes'])} min, {size['connections']:,} connections in {size['rooms']} "
        f"rooms on two workers, {cut_text}; load average (1, 5, 15 min) "
        f"{_load(load_before)} before, {_load(load_after)} after (the machine is shared).",
        "",
        f"**Correctness: {results['violations']} violation(s).**",
        "",
        "| check | count |",
        "|---|---|",
    ]
    checks = results["checks"]
    lines += [
        f"| room events received by members | {checks['events']:,} |",
        f"| answers ended (by status) | {_statuses(checks)} |",
        f"| answers checked by members, deltas joined = `answer.end` text: from the start / "
        f"joined mid-answer (from the welcome's history) | {checks['checked_full']:,} / "
        f"{checks['checked_from_history']:,} |",
        f"| answers compared with their PostgreSQL row (status, text, end seq) | "
        f"{checks['db']['answers_compared']:,} |",
    ]
    counts = results["tally"]["counts"]
    for kind in ALL_KINDS:
        lines.append(f"| {KIND_TEXT[kind]} | {counts.get(kind, 0)} |")
    lines += ["", _churn(results), *_absent(results), "", *_resources(results)]
    return "\n".join([*lines, *_examples(results)])


def _absent(results: dict[str, Any]) -> list[str]:
    lines = []
    if results["absent_at_end"]:
        shown = ", ".join(f"{m['member']} ({m['state']})" for m in results["absent_at_end"][:10])
        lines += ["", f"Members not connected at the end: {shown}."]
    if results["failures"]:
        lines += [
            "",
            "**The soak's own client tasks failed** (a bug of the soak, not of the "
            "server): " + "; ".join(results["failures"][:5]),
        ]
    return lines


def _load(load: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in load)


def _statuses(checks: dict[str, Any]) -> str:
    statuses = checks["db"]["answer_statuses"]
    total = sum(statuses.values())
    parts = ", ".join(f"{name} {count:,}" for name, count in sorted(statuses.items()))
    errors = checks["db"]["answer_errors"]
    if errors:
        parts += " (errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) + ")"
    return f"{total:,}: {parts}" if total else "0"


def _churn(results: dict[str, Any]) -> str:
    c = results["counters"]
    closes = ", ".join(
        f"{k.split(': ', 1)[1]}: {v:,}" for k, v in sorted(c.items()) if k.startswith("closed by")
    )
    failures = sum(v for k, v in c.items() if k.startswith(("connect failed", "no welcome")))
    asks = results["asks"]
    return (
        f"**Churn.** {c.get('leave', 0):,} leaves (and fresh joins), "
        f"{c.get('reconnect (socket dropped)', 0):,} reconnects after dropping the socket and "
        f"{c.get('reconnect (closed)', 0):,} after closing it; closed by the servers: "
        f"{closes or 'none'}; {c.get('dropped', 0):,} sockets dropped by the other side; "
        f"{failures:,} failed connection attempts (retried with a backoff). Welcomes: "
        f"{c.get('welcome: fresh join', 0):,} fresh, {c.get('welcome: resumed', 0):,} resumed, "
        f"{c.get('welcome: full, on a resume', 0):,} full on a resume. Questions: "
        f"{asks['sent']:,} asked, {asks['posted']:,} posted, {c.get('asks sent again', 0):,} "
        f"sent again after a reconnect (same client_id), {asks['refused']:,} refused, "
        f"{asks['unconfirmed']:,} never posted. Members connected at the end: "
        f"{results['connected_at_end']:,} of {results['size']['connections']:,}."
    )


def _resources(results: dict[str, Any]) -> list[str]:
    size = results["size"]
    lines = [
        f"**Resources** (sampled every {_n(size['sample_every'])} s; steady part: from "
        f"{_n(size['warmup'])} s to the last question at {_n(size['minutes'] * 60)} s; "
        "change = the last third's mean against the middle third's; flat = within "
        f"{results['tolerance'] * 100:.0f}%, or a few units for small counts). Verdict: "
        + ("**flat**." if results["flat"] else "**not flat**: " + ", ".join(results["not_flat"])),
        "",
        "| metric | first steady sample | middle third | last third | change | slope per hour"
        " | flat |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["flatness"]:
        if "change" not in row:
            continue
        unit = f" {row['unit']}" if row["unit"] else ""
        lines.append(
            f"| {row['label']} | {_n(row['first'])}{unit} | {_n(row['middle_mean'])}{unit} | "
            f"{_n(row['last_mean'])}{unit} | {row['change'] * 100:+.1f}% | "
            f"{row['slope_per_hour']:+,.1f}{unit} | {_verdict(row)} |"
        )
    after = results.get("after_close")
    if after:
        lines += [
            "",
            f"After every member closed: worker RSS {_n(after['worker-0']['rss_mib'])} and "
            f"{_n(after['worker-1']['rss_mib'])} MiB, open files "
            f"{after['worker-0']['open_files']} and {after['worker-1']['open_files']}, "
            f"Redis presence entries {after['redis']['presence_entries']}, live answers "
            f"{after['redis']['live_answers']}.",
        ]
    logs = results.get("worker_logs", {})
    if logs:
        lines += ["", "Worker logs: " + "; ".join(f"{k}: {v}" for k, v in logs.items()) + "."]
    return lines


def _verdict(row: dict[str, Any]) -> str:
    if not row["judged"]:
        return "(follows the members)"
    return "yes" if row["flat"] else "**no**"


def _examples(results: dict[str, Any]) -> list[str]:
    examples = results["tally"]["examples"]
    shown = [kind for kind in ALL_KINDS if examples.get(kind)]
    if not shown:
        return []
    lines = ["", "First examples of each violation (all in the JSON results):", ""]
    for kind in shown:
        for example in examples[kind][:3]:
            lines.append(f"- `{kind}`: `{json.dumps(example, default=str)[:300]}`")
    return lines


def write(results: dict[str, Any], text: str, outs: list[Path]) -> None:
    for out in outs:
        if out.suffix == ".md":
            bench_report.update_doc(out, text, markers=MARKERS, heading="Soak")
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1, default=str))


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.soak.report RESULTS.json [--out FILE.md|.json]`: render saved results,
    judging their samples with the current rules (bench.soak.resources.METRICS)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.soak.report")
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", action="append", type=Path, default=[], help=".md or .json")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    size = results["size"]
    results.update(
        resources.verdict(
            results["samples"],
            after=size["warmup"],
            until=size["minutes"] * 60,
            tolerance=results["tolerance"],
        )
    )
    text = markdown(results)
    print(text)
    write(results, text, args.out)


if __name__ == "__main__":
    main()
