"""The burst benchmark's measurements outside the server, in a process of its own with a
worker's environment (the same settings, embedding function and Chroma directory):

- the floor: the N questions of a burst embedded in one batch by the project's embedding
  function (`embed_query`, as a query is embedded for search), for each N;
- retrieval: the chat's retriever on each of the one-at-a-time questions.

`python -m bench.burst_probe --repeat R --batch N... --retrieve QUESTION... -- QUESTION...`
prints `{"floor": {"N": [seconds, ...]}, "retrieval": {"QUESTION": [seconds, ...]}}`; the
batches take the first N of the questions after `--`. The first call of each kind, which loads
the model and the indexes, is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench.retrieval_probe import probe as retrieval


def floor(questions: list[str], sizes: list[int], repeat: int) -> dict[str, list[float]]:
    from chat.retrieval import get_embedding_function

    ef = get_embedding_function()
    ef.embed_query(questions[:1])  # warm-up: loads the model
    timings: dict[str, list[float]] = {str(n): [] for n in sizes}
    for _ in range(repeat):
        for n in sizes:
            batch = questions[:n]
            started = time.perf_counter()
            ef.embed_query(batch)
            timings[str(n)].append(time.perf_counter() - started)
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.burst_probe")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, action="append", default=[])
    parser.add_argument("--retrieve", action="append", default=[])
    parser.add_argument("questions", nargs="*")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    result = {
        "floor": floor(args.questions, args.batch, args.repeat) if args.batch else {},
        "retrieval": asyncio.run(retrieval(args.retrieve, args.repeat)) if args.retrieve else {},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
