"""`python -m llmsim --port 8001 --tps 50 --first-token-delay 0.2 --tokens 60`"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .config import FAULTS, SimConfig
from .runner import SimulatorServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llmsim",
        description="An OpenAI-compatible streaming chat completions simulator.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per answer")
    parser.add_argument("--tps", type=float, default=50.0, help="tokens per second (0: no pacing)")
    parser.add_argument("--first-token-delay", type=float, default=0.2, help="seconds")
    parser.add_argument("--fault", choices=sorted(FAULTS), default=None)
    parser.add_argument("--fault-after", type=int, default=None, help="tokens before the fault")
    parser.add_argument("--fail-times", type=int, default=0, help="fault only the first N")
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds, on 429/503")
    parser.add_argument("--echo", action="store_true", help="start answers with the question")
    parser.add_argument("--model", default="simulator")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    config = SimConfig(
        tokens=args.tokens,
        tps=args.tps,
        first_token_delay=args.first_token_delay,
        fault=args.fault,
        fault_after=args.fault_after,
        fail_times=args.fail_times,
        retry_after=args.retry_after,
        echo=args.echo,
        model=args.model,
    )
    server = SimulatorServer(config, host=args.host, port=args.port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"LLM simulator listening on {server.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
