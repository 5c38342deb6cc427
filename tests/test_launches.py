"""Every way the project starts a chat worker gives a WebSocket handshake the same time to wait
for it: daphne's default (5 s) drops handshakes a busy worker has not reached yet, and in a
reconnect storm every dropped one comes back and is done again (docs/benchmarks.md,
"Reconnect storm")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCHES = ["scripts/serve", "scripts/cluster", "Dockerfile", "docker-compose.yml"]


def flattened(path: str) -> str:
    """The file with shell line continuations joined and JSON-array quoting dropped, so a
    daphne command reads as one line of words."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    return re.sub(r'[",\[\]]', " ", text)


@pytest.mark.parametrize("path", LAUNCHES)
def test_each_launch_lets_a_handshake_wait_30_seconds(path: str) -> None:
    commands = [
        line
        for line in flattened(path).splitlines()
        if not line.lstrip().startswith("#")
        and re.search(r"(^|[\s/])daphne\s", line)
        and "config.asgi:application" in line
    ]
    assert commands, f"no daphne command found in {path}"
    for command in commands:
        assert re.search(r"--websocket_connect_timeout\s+30\b", command), command


def test_the_benchmarks_and_the_tests_launch_workers_alike() -> None:
    for path in ("bench/procs.py", "tests/servers.py"):
        text = (ROOT / path).read_text()
        assert re.search(r'"--websocket_connect_timeout",\s*"30"', text), path
