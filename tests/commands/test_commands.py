"""`manage.py ask` and `manage.py create_token` as real processes, against the LLM simulator
(and, for tokens and `--room`, the real server sharing their database)."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.conftest import Server, sse
from tests.servers import BIN, ROOT

pytestmark = pytest.mark.slow


def manage(server: Server, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ask_prints_the_answer_as_it_streams_then_its_sources(api_server: Server) -> None:
    process = subprocess.Popen(
        [str(BIN / "python"), "manage.py", "ask", "Latte price? [[sim tps=20 tokens=30]]"],
        cwd=ROOT,
        env=api_server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.read1(1)  # type: ignore[attr-defined]
        # Some of the answer is out while the rest (1.5 s at 20 tokens/s) is still coming.
        assert first and process.poll() is None
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    text = (first + out).decode()
    assert process.returncode == 0, err.decode()
    answer, _, sources = text.partition("\nSources:\n")
    assert len(answer.split()) == 30
    assert "(menu-drinks.md)" in sources
    assert all(line.startswith("  - ") for line in sources.strip("\n").splitlines())


def test_ask_json_prints_one_event_per_line(api_server: Server) -> None:
    done = manage(api_server, "ask", "What desserts? [[sim tps=200]]", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["type"] == "answer.sources" and events[0]["sources"]
    assert {e["type"] for e in events[1:-1]} == {"answer.delta"}
    end = events[-1]
    assert end["type"] == "answer.end" and end["status"] == "complete"
    assert end["text"] == "".join(e["text"] for e in events[1:-1])
    assert all("seq" not in e for e in events)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("ask", "Hi [[sim fault=400]]"), 1, "llm_rejected"),
        (("ask", "Hi [[sim fault=drop tokens=20]]", "--json"), 1, "failed"),
        (("ask", "   "), 2, "invalid"),
        (("ask", "Hi", "--room", "bad.room"), 2, "room name"),
        (("ask", "Hi", "--room", "fine", "--user", "nobody"), 2, "no user"),
        (("ask", "Hi", "--user", "alice"), 2, "--user only applies with --room"),
    ],
)
def test_ask_fails_with_a_non_zero_exit(
    api_server: Server, args: tuple[str, ...], code: int, message: str
) -> None:
    done = manage(api_server, *args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in done.stderr


async def test_ask_in_a_room_goes_through_the_runner_and_is_stored(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    done = manage(
        api_server, "ask", "Opening hours?", "--room", "from-cli", "--user", "grace", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert "REDIS_URL" in done.stderr  # Says what the in-process log means.
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["type"] for e in events[:3]] == ["question", "answer.start", "answer.sources"]
    assert events[0]["user"]["name"] == "grace"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    end = events[-1]
    assert end["type"] == "answer.end" and end["status"] == "complete"
    # Stored: the server's room starts from the database and shows it.
    async with sse(http, "/api/rooms/from-cli/events", headers=api_server.auth("grace")) as r:
        history = (await r.event()).json()["history"]
    assert [(m["role"], m["text"]) for m in history] == [
        ("user", "Opening hours?"),
        ("assistant", end["text"]),
    ]
    assert history[1]["status"] == "complete"


async def test_create_token_prints_a_working_key_once(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    done = manage(api_server, "create_token", "ivan", "--name", "cli test")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("rc_") and "\n" not in key
    assert "cannot be shown again" in done.stderr
    async with sse(
        http, "/api/rooms/tokens/events", headers={"Authorization": f"Bearer {key}"}
    ) as r:
        assert (await r.event()).json()["user"]["name"] == "ivan"
    missing = manage(api_server, "create_token", "nobody")
    assert missing.returncode == 2 and "no user" in missing.stderr
