"""The simulator speaks OpenAI's wire format, paces tokens, and reports what it did."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

import aiohttp
import pytest

from bench.procs import stop_process
from llmsim import SimulatorServer, SimulatorThread, simulated_text, simulated_tokens
from llmsim.config import ConfigError, SimConfig, parse_directives


def body(question: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": question}], **extra}


async def sse_events(sim: SimulatorServer, payload: dict[str, Any]) -> list[str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.base_url}/chat/completions", json=payload) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    assert raw.endswith("\n\n")
    events = raw.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events)
    return [event.removeprefix("data: ") for event in events]


async def test_stream_has_openais_chunk_sequence(sim: SimulatorServer) -> None:
    events = await sse_events(
        sim, body(stream=True, stream_options={"include_usage": True}, max_tokens=100)
    )

    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(isinstance(chunk["sim_sent_at"], float) for chunk in chunks)
    first, *content, finish, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in content] == simulated_tokens(12)
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 12
    assert all(chunk["usage"] is None for chunk in chunks[:-1])


async def test_stream_without_include_usage_has_no_usage_chunk(sim: SimulatorServer) -> None:
    events = await sse_events(sim, body(stream=True))

    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks)


async def test_directives_in_the_last_user_message_override_the_defaults(
    sim: SimulatorServer,
) -> None:
    payload = body("Tell me [[sim tokens=3 echo=1]] now", stream=True)

    events = await sse_events(sim, payload)

    text = "".join(
        json.loads(event)["choices"][0]["delta"].get("content", "") for event in events[:-1]
    )
    assert text == "Tell me now " == simulated_text(3, question="Tell me now", echo=True)


async def test_tokens_are_paced_at_the_configured_rate(sim: SimulatorServer) -> None:
    sim.configure(tokens=11, tps=50, first_token_delay=0.1)
    started = time.time()

    events = await sse_events(sim, body(stream=True))

    sent = [json.loads(event)["sim_sent_at"] for event in events[1:-2]]
    assert len(sent) == 11
    assert sent[0] - started >= 0.09
    assert sent[-1] - sent[0] >= 10 / 50 - 0.01


async def test_non_streaming_answer_is_one_completion(sim: SimulatorServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.base_url}/chat/completions", json=body()) as response,
    ):
        data = await response.json()

    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == simulated_text(12)
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] == 12
    assert sim.stats()[0].finished


async def test_status_fault_sends_retry_after_and_an_openai_error_body(
    sim: SimulatorServer,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim.base_url}/chat/completions", json=body("[[sim fault=429 retry_after=2]]")
        ) as response,
    ):
        data = await response.json()

    assert response.status == 429
    assert response.headers["Retry-After"] == "2"
    assert data["error"]["code"] == "rate_limit_exceeded"


async def test_fail_times_faults_only_the_first_requests(sim: SimulatorServer) -> None:
    payload = body("[[sim fault=500 fail_times=2]]")
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(f"{sim.base_url}/chat/completions", json=payload) as resp:
                statuses.append(resp.status)

    assert statuses == [500, 500, 200]


async def test_unknown_directive_is_a_400(sim: SimulatorServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim.base_url}/chat/completions", json=body("[[sim colour=blue]]")
        ) as response,
    ):
        data = await response.json()

    assert response.status == 400
    assert "colour" in data["error"]["message"]


async def test_admin_api_configures_reports_and_resets(sim: SimulatorServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim.url}/_sim/config", json={"tokens": 4}) as response:
            assert (await response.json())["config"]["tokens"] == 4
        async with session.post(f"{sim.base_url}/chat/completions", json=body()) as response:
            assert (await response.json())["usage"]["completion_tokens"] == 4
        async with session.get(f"{sim.url}/_sim/stats") as response:
            [record] = (await response.json())["requests"]
        async with session.get(f"{sim.base_url}/models") as response:
            assert (await response.json())["data"][0]["owned_by"] == "simulator"
        async with session.post(f"{sim.url}/_sim/reset") as response:
            assert response.status == 200
        async with session.post(f"{sim.url}/_sim/config", json={"fault": "nope"}) as response:
            assert response.status == 400

    assert record["id"] == 1
    assert record["tokens_sent"] == 4
    assert record["finished"] is True
    assert record["client_disconnected_early"] is False
    assert sim.stats() == []
    assert sim.state.defaults.tokens == 12


def test_directive_parsing_and_validation() -> None:
    found = parse_directives("a [[sim fault=429 retry_after=1]] b [[sim tps=5]]")

    assert found == {"fault": "429", "retry_after": "1", "tps": "5"}
    config = SimConfig().updated(found)
    assert (config.fault, config.retry_after, config.tps) == ("429", 1.0, 5.0)
    with pytest.raises(ConfigError):
        parse_directives("[[sim fault]]")
    with pytest.raises(ConfigError):
        SimConfig().updated({"tokens": "many"})


def test_simulator_thread_serves_synchronous_callers() -> None:
    with SimulatorThread(tokens=5, tps=0, first_token_delay=0) as sim:
        request = urllib.request.Request(
            f"{sim.base_url}/chat/completions",
            data=json.dumps(body()).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            data = json.load(response)
        sim.configure(tokens=2)
        stats = sim.stats()

    assert data["choices"][0]["message"]["content"] == simulated_text(5)
    assert [record.finished for record in stats] == [True]
    assert sim.stats() == stats, "stats stay readable after the thread stopped"


@pytest.mark.slow
def test_the_command_line_server_prints_its_url_and_answers() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "llmsim", "--port", "0", "--tokens", "3", "--tps", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        request = urllib.request.Request(
            f"{base_url}/chat/completions",
            data=json.dumps(body()).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            data = json.load(response)
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()

    assert data["choices"][0]["message"]["content"] == simulated_text(3)
    assert process.returncode == 0
