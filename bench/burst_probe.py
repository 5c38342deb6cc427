"""The burst and TTFD benchmarks' measurements outside the server, in a process of its own with
a worker's environment (the same settings, embedding function and Chroma directory):
- the floor: each burst's own questions embedded in one batch by the project's embedding
  function (`embed_query`, as a query is embedded for search), per level N;
- retrieval: the chat's retriever on each of the one-at-a-time questions.
`python -m bench.burst_probe --repeat R --pause S [--batches] [--retrieve QUESTION...]` reads,
with `--batches`, `{"N": [[question, ...], ...]}` on standard input (each level's bursts, each
a list of N questions) and prints `{"floor": {"N": [seconds, ...]}, "retrieval": {"QUESTION":
[seconds, ...]}, "floor_warm": ..., "retrieval_warm": ...}`. Each level's bursts are embedded
in turn, whole passes over them until at least R batches are timed. `floor` and `retrieval`
are timed after `S` seconds idle each, as the server meets a burst (the machine has been idle
since the previous one's answers ended); the `_warm` ones back to back, as the model runs when
it never rests. The first call of each kind, which loads the model and the indexes, is not
counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bench.procs import PYTHON, ROOT
from bench.retrieval_probe import probe as retrieval


@dataclass(frozen=True, slots=True)
class Probed:
    """Seconds per timed call: the floor per level and retrieval per question, each after the
    pause (as the server meets them) and back to back (`_warm`)."""

    floor: dict[int, list[float]]
    floor_warm: dict[int, list[float]]
    retrieval: dict[str, list[float]]
    retrieval_warm: dict[str, list[float]]

    def renamed(self, names: Mapping[str, str]) -> Probed:
        """The same, with each probed question under its name in `names`."""
        return Probed(
            self.floor,
            self.floor_warm,
            {names[q]: times for q, times in self.retrieval.items()},
            {names[q]: times for q, times in self.retrieval_warm.items()},
        )


def measure(
    env: Mapping[str, str],
    *,
    repeat: int,
    pause: float,
    batches: Mapping[int, list[list[str]]] | None = None,
    retrieve: list[str] | None = None,
) -> Probed:
    """Runs this module in a process of its own with `env` (a worker's) and reads its result.
    `batches`: per level N, the bursts whose floor is timed (each the N questions it asks)."""
    argv = [PYTHON, "-m", "bench.burst_probe", "--repeat", str(repeat), "--pause", str(pause)]
    if batches:
        argv.append("--batches")
    for text in retrieve or []:
        argv += ["--retrieve", text]
    completed = subprocess.run(
        argv,
        cwd=ROOT,
        env=dict(env),
        check=True,
        capture_output=True,
        text=True,
        input=json.dumps({str(n): bursts for n, bursts in (batches or {}).items()}),
    )
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    return Probed(
        floor={int(n): times for n, times in found.get("floor", {}).items()},
        floor_warm={int(n): times for n, times in found.get("floor_warm", {}).items()},
        retrieval=found.get("retrieval", {}),
        retrieval_warm=found.get("retrieval_warm", {}),
    )


def floor(
    batches: dict[str, list[list[str]]], repeat: int, pause: float = 0.0
) -> dict[str, list[float]]:
    """Seconds to embed each level's bursts, each in one batch: the same texts the bursts ask
    (the floor of "those N questions"; questions differ in length, and so does the time to
    embed them). Whole passes over a level's bursts, the levels interleaved."""
    from chat.retrieval import get_embedding_function

    ef = get_embedding_function()
    first = next(burst for bursts in batches.values() for burst in bursts)
    ef.embed_query(first[:1])  # warm-up: loads the model
    # Whole passes over each level's bursts, at least `repeat` batches.
    queues = {n: bursts * math.ceil(repeat / len(bursts)) for n, bursts in batches.items()}
    timings: dict[str, list[float]] = {n: [] for n in batches}
    for index in range(max(len(queue) for queue in queues.values())):
        for n, queue in queues.items():
            if index < len(queue):
                if pause:
                    time.sleep(pause)
                started = time.perf_counter()
                ef.embed_query(queue[index])
                timings[n].append(time.perf_counter() - started)
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.burst_probe")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--batches", action="store_true", help="read the bursts on stdin")
    parser.add_argument("--retrieve", action="append", default=[])
    args = parser.parse_args(argv)
    batches = json.load(sys.stdin) if args.batches else {}
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    result: dict[str, dict[str, list[float]]] = {}
    for suffix, pause in (("_warm", 0.0), ("", args.pause)):
        if batches:
            result["floor" + suffix] = floor(batches, args.repeat, pause)
        if args.retrieve:
            result["retrieval" + suffix] = asyncio.run(retrieval(args.retrieve, args.repeat, pause))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
