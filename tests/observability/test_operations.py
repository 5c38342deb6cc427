"""`/healthz`, `/readyz` and `/metrics` through the real ASGI application, in process; the
readiness checks' timeouts with checks that hang; the JSON log line; request ids. The same on
real workers: tests/cluster/test_operations.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from django.test import Client

from chat.observability import context, metrics
from chat.readiness import Readiness, _Check
from config.asgi import application
from config.logformat import AddContext, JsonFormatter

TOKEN = "t0ken-for-tests-" + "x" * 20


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://web-3:8000") as client:
        yield client


async def test_healthz_answers_any_host_without_django(http: httpx.AsyncClient) -> None:
    # `web-3` is in no ALLOWED_HOSTS: probes come to a worker's own address.
    reply = await http.get("/healthz")
    assert (reply.status_code, reply.json()) == (200, {"status": "alive"})
    assert reply.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_only_get_and_head(http: httpx.AsyncClient, path: str) -> None:
    reply = await http.post(path, content=b"{}")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET"


async def test_metrics_are_off_without_a_token(http: httpx.AsyncClient, settings: Any) -> None:
    settings.CHAT_METRICS_TOKEN = ""
    reply = await http.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert reply.status_code == 404
    assert b"chat_" not in reply.content


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
async def test_a_scrape_without_the_token_is_refused(
    http: httpx.AsyncClient, settings: Any, authorization: str | None
) -> None:
    settings.CHAT_METRICS_TOKEN = TOKEN
    headers = {"Authorization": authorization} if authorization is not None else {}
    reply = await http.get("/metrics", headers=headers)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert b"chat_" not in reply.content


async def test_the_token_gets_the_metrics(http: httpx.AsyncClient, settings: Any) -> None:
    settings.CHAT_METRICS_TOKEN = TOKEN
    metrics.frame_refused("invalid")
    reply = await http.get("/metrics", headers={"Authorization": f"bearer  {TOKEN}"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    for name in (
        "chat_connections_open",
        "chat_rooms_with_members",
        "chat_answers_running",
        "chat_answer_first_delta_seconds_bucket",
        "chat_llm_first_token_seconds_bucket",
        "chat_room_log_append_seconds_bucket",
        "chat_redis_reconnects_total",
    ):
        assert name in text, name
    assert 'chat_frames_refused_total{code="invalid"}' in text
    head = await http.head("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert head.status_code == 200 and head.content == b""


async def _ok(within: float) -> None:
    return None


async def _hangs(within: float) -> None:
    await asyncio.sleep(3600)


async def _fails(within: float) -> None:
    raise ConnectionError("cannot reach 10.1.2.3:6379 with password hunter2")


async def test_readiness_never_hangs_and_never_piles_up(settings: Any) -> None:
    settings.CHAT_READY_TIMEOUT_SECONDS = 0.2
    settings.REDIS_URL = "redis://10.1.2.3:6379/0"
    hung = _Check("database", _hangs)
    readiness = Readiness(
        [hung, _Check("redis", _fails), _Check("chroma", _ok), _Check("llm", _fails, fatal=False)]
    )
    ready, body = await asyncio.wait_for(readiness.report(), 5)
    assert not ready
    assert body["status"] == "unready"
    assert body["failed"] == ["database", "redis"]  # not the LLM: reported only
    assert body["checks"]["database"]["error"] == "no answer within 0.2 s"
    assert body["checks"]["redis"]["error"] == "failed (ConnectionError)"
    assert body["checks"]["llm"]["ok"] is False and body["checks"]["llm"]["fatal"] is False
    assert body["checks"]["chroma"]["ok"] is True
    assert "10.1.2.3" not in json.dumps(body) and "hunter2" not in json.dumps(body)
    first = hung.in_flight
    # The hung check is still running: the next probe says so, and starts no second one.
    ready, body = await asyncio.wait_for(readiness.report(), 5)
    assert body["checks"]["database"]["error"] == "the previous check has not finished"
    assert hung.in_flight is first
    assert first is not None
    first.cancel()


async def test_redis_is_not_checked_when_not_configured(settings: Any) -> None:
    settings.REDIS_URL = ""
    ready, body = await Readiness([_Check("redis", _fails)]).report()
    assert ready and body["checks"]["redis"] == {"ok": True, "configured": False}


def test_a_json_log_line_says_where_it_comes_from() -> None:
    async def in_a_task() -> logging.LogRecord:
        context.bind(room="lobby", answer_id="a_1", user_id="u_2", request_id="req_3")
        record = logging.LogRecord(
            "chat.x", logging.WARNING, __file__, 1, "%s went %d", ("it", 3), None
        )
        AddContext().filter(record)
        return record

    record = asyncio.run(in_a_task())
    record.fields = {"llm_request_id": "req_llm"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "it went 3"
    assert (line["level"], line["logger"]) == ("WARNING", "chat.x")
    assert (line["room"], line["answer_id"], line["user_id"]) == ("lobby", "a_1", "u_2")
    assert line["request_id"] == "req_3" and line["worker"]
    assert line["llm_request_id"] == "req_llm"
    assert line["time"].endswith("+00:00")
    # Outside that task, nothing leaks: the fields are null.
    other = logging.LogRecord("chat.x", logging.INFO, __file__, 1, "plain", (), None)
    AddContext().filter(other)
    assert json.loads(JsonFormatter().format(other))["room"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        ("0123456789abcdef0123", True),
        ("bad id with spaces!", False),
        ("x" * 200, False),
        ("", False),
    ],
)
def test_every_response_carries_a_request_id(client: Client, given: str, echoed: bool) -> None:
    reply = client.get("/", headers={"X-Request-ID": given} if given else {})
    rid = reply.headers["X-Request-ID"]
    assert (rid == given) is echoed
    if not echoed:
        assert rid.startswith("req_") and len(rid) == 20
