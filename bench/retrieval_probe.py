"""Time the chat's retrieval from outside the server: the same retriever, settings and Chroma
directory as a daphne worker, in a process of its own.

`python -m bench.retrieval_probe --repeat N [--pause S] QUESTION...` (environment as for a
worker) prints `{"QUESTION": [seconds, ...], ...}`; the first call, which loads the model, is not
counted. With `--pause`, each timed call comes after that many seconds idle, as a question finds
a server between one-at-a-time questions: on an idle machine the embedding takes half as long
again after even 50 ms idle as back to back (docs/benchmarks.md, "Back to back, or after a
pause").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time


async def probe(questions: list[str], repeat: int, pause: float = 0.0) -> dict[str, list[float]]:
    from django.conf import settings

    from chat.retrieval import get_retriever

    retriever = get_retriever()
    collection, k = settings.CHAT_COLLECTION, settings.CHAT_RETRIEVAL_K
    await retriever.retrieve(questions[0], collection=collection, k=k)
    timings: dict[str, list[float]] = {question: [] for question in questions}
    for _ in range(repeat):
        for question in questions:
            if pause:
                await asyncio.sleep(pause)
            started = time.perf_counter()
            await retriever.retrieve(question, collection=collection, k=k)
            timings[question].append(time.perf_counter() - started)
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_probe")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("questions", nargs="+")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    print(json.dumps(asyncio.run(probe(args.questions, args.repeat, args.pause))))


if __name__ == "__main__":
    main()
