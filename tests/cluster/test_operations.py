"""What an operator watches, on real workers: `/metrics` counts what happened (an answer
interrupted by its worker's death, on the survivor that ended it; an LLM request retried
after a 429), only for whoever has the token; `/readyz` follows Redis going away and coming
back, without a restart; the log says which LLM request made an answer, in JSON when asked,
and never holds the API key or a question's text."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.clients import Member
from tests.cluster.conftest import ClusterFactory
from tests.cluster.harness import Cluster, RedisServer
from tests.conftest import wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

TOKEN = "metrics-" + secrets.token_hex(8)
# An NCSA line of daphne's access log: `127.0.0.1:45446 - - [30/Nov/2026:16:38:07] "GET /x" 200 7`
ACCESS_LINE = re.compile(r'\S+ - - \[[^\]]+\] "[A-Z]+ \S+" (\d{3}|-) (\d+|-)')


def get(url: str, *, token: str | None = None, timeout: float = 15) -> tuple[int, bytes]:
    """(status, body) of a GET, errors included."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def scrape(cluster: Cluster, index: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a worker's `/metrics`, by name and labels."""
    status, body = get(f"{cluster.url(index)}/metrics", token=TOKEN)
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_killed_workers_answer_counts_once_as_interrupted_on_the_survivor(
    make_cluster: ClusterFactory, room: str
) -> None:
    cluster = make_cluster(workers=2, env={"CHAT_METRICS_TOKEN": TOKEN})
    asker = await Member.join(cluster.ws_url(0, room))
    watcher = await Member.join(cluster.ws_url(1, room))
    before = scrape(cluster, 1)
    assert value(before, "chat_connections_open", transport="websocket") == 1
    assert value(before, "chat_rooms_with_members") == 1
    await asker.ask("A long answer [[sim tokens=3000 tps=40]]")
    start = (await watcher.until(lambda f: f["type"] == "answer.start"))[-1]
    await watcher.until(lambda f: f["type"] == "answer.delta")
    assert cluster.owner_of(start["id"]) == 0
    running = scrape(cluster, 0)
    assert value(running, "chat_answers_running") == 1
    cluster.kill(0)
    end = await watcher.until_end(start["id"], timeout=15)
    assert end["status"] == "interrupted"

    interrupted = {"status": "interrupted", "error": "interrupted"}
    # The reaper counts the end once its append has returned, and the watcher can have the
    # end first (the hub's delivery and the append's reply come over different Redis
    # connections): the count is waited for, then must be exactly one.
    await wait_for(
        lambda: (
            value(scrape(cluster, 1), "chat_answers_total", **interrupted)
            > value(before, "chat_answers_total", **interrupted)
        ),
        timeout=10,
        interval=0.1,
    )
    after = scrape(cluster, 1)
    assert (
        value(after, "chat_answers_total", **interrupted)
        - value(before, "chat_answers_total", **interrupted)
        == 1
    )
    # Nothing else ended there, and nothing runs there.
    assert value(after, "chat_answers_total", status="complete", error="none") == value(
        before, "chat_answers_total", status="complete", error="none"
    )
    assert value(after, "chat_answers_running") == 0
    await watcher.close()
    await asker.close()


async def test_a_429_is_retried_counted_and_logged_without_the_key_or_the_question(
    make_cluster: ClusterFactory, room: str
) -> None:
    api_key = "sk-secret-" + secrets.token_hex(12)
    question_words = "zebra quasar " + secrets.token_hex(6)
    cluster = make_cluster(
        workers=1,
        env={
            "CHAT_METRICS_TOKEN": TOKEN,
            "CHAT_LOG_FORMAT": "json",
            "OPENAI_API_KEY": api_key,
        },
    )
    url = f"{cluster.url(0)}/metrics"
    # Without the token, or with another, nothing is said.
    for token in (None, "", "wrong-" + TOKEN, TOKEN + "x"):
        status, body = get(url, token=token)
        assert status == 401, (token, status)
        assert b"chat_" not in body
    before = scrape(cluster, 0)

    member = await Member.join(cluster.ws_url(0, room))
    await member.ask(f"{question_words}? [[sim fault=429 fail_times=1 retry_after=0.05]]")
    end = await member.until_end(timeout=30)
    assert end["status"] == "complete", end
    after = scrape(cluster, 0)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("chat_llm_retries_total", reason="llm_rate_limited") == 1
    assert grew("chat_answers_total", status="complete", error="none") == 1
    assert grew("chat_answer_first_delta_seconds_count") == 1
    assert grew("chat_answer_first_delta_server_seconds_count") == 1
    assert grew("chat_llm_first_token_seconds_count") == 1
    assert grew("chat_answer_deltas_total") >= 1
    assert grew("chat_room_log_append_seconds_count") >= 3  # question, start, deltas, end
    assert grew("chat_llm_tokens_total", kind="completion") >= 1

    # A request the LLM refuses (a bad key): the failure is logged, the key is not.
    await member.ask(f"{question_words} again [[sim fault=401]]")
    failed = await member.until_end(timeout=30)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "llm_rejected")

    # The answer's line, in JSON: who, where, and the LLM request behind it.
    await wait_for(lambda: "ended failed" in cluster.logs(0), timeout=10)
    logs = cluster.logs(0)
    lines = []
    for text in logs.splitlines():
        if ACCESS_LINE.fullmatch(text):
            continue  # daphne's own access log, not Python's logging (`-v 0` turns it off)
        if text.strip():
            lines.append(json.loads(text))
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message", "worker"} <= set(line), line
        assert {"room", "answer_id", "user_id", "request_id"} <= set(line), line
    ended = [line for line in lines if line.get("answer_id") == end["answer_id"]]
    answer_line = next(line for line in ended if "ended complete" in line["message"])
    assert answer_line["room"] == room
    assert answer_line["request_id"].startswith("ws_")  # the socket that asked
    assert answer_line["user_id"] == member.welcome["user"]["id"]
    assert answer_line["llm_request_id"].startswith("req_")
    assert answer_line["llm_retries"] == 1
    assert answer_line["first_delta_seconds"] > answer_line["llm_first_token_seconds"] > 0
    # A refused request's line names its request id too, and the error code.
    refused = next(
        line
        for line in lines
        if line.get("answer_id") == failed["answer_id"] and "ended failed" in line["message"]
    )
    assert (refused["error"], refused["llm_request_id"][:4]) == ("llm_rejected", "req_")
    # The retry was logged (a warning), with the answer's ids, and no secret.
    assert any("retry 1 of" in line["message"] for line in ended)
    assert api_key not in logs
    assert question_words not in logs
    assert "zebra" not in logs
    await member.close()


@pytest.fixture
def redis_proxy(shared_redis: RedisServer) -> Iterator[tuple[TcpProxy, str]]:
    """As in test_redis_outage: named before `make_cluster`, stopped after the workers."""
    proxy = TcpProxy("127.0.0.1", shared_redis.port).start()
    database = shared_redis.url.rsplit("/", 1)[-1]
    try:
        yield proxy, f"redis://127.0.0.1:{proxy.port}/{database}"
    finally:
        proxy.stop()


async def test_readyz_is_503_while_redis_is_away_and_200_again_after_without_a_restart(
    redis_proxy: tuple[TcpProxy, str], make_cluster: ClusterFactory
) -> None:
    proxy, url = redis_proxy
    cluster = make_cluster(workers=1, env={"REDIS_URL": url, "CHAT_READY_TIMEOUT_SECONDS": "1"})
    base = cluster.url(0)
    status, body = get(f"{base}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "alive"})

    def ready() -> tuple[int, dict[str, Any]]:
        status, body = get(f"{base}/readyz")
        return status, json.loads(body)

    # The embedding model loads in the background: ready once it has.
    await wait_for(lambda: ready()[0] == 200, timeout=60, interval=0.5)
    status, report = ready()
    assert report["status"] == "ready" and report["failed"] == []
    assert {"database", "redis", "chroma", "embedding", "llm"} <= set(report["checks"])
    assert report["checks"]["llm"] == {**report["checks"]["llm"], "ok": True, "fatal": False}

    for mode in ("hold", "refuse"):  # a black hole (the check's timeout), a refusal
        proxy.cut(mode)
        status, report = await asyncio.to_thread(ready)
        assert status == 503, report
        assert report["status"] == "unready"
        assert report["failed"] == ["redis"]
        assert report["checks"]["redis"]["ok"] is False
        assert url not in json.dumps(report)  # what failed, not where
        assert report["checks"]["database"]["ok"] is True
        proxy.restore()
        await wait_for(lambda: ready()[0] == 200, timeout=30, interval=0.5)
    logs = cluster.logs(0)
    assert "Readiness: redis failed" in logs
    assert "Readiness: redis is usable again" in logs
    assert "Traceback" not in logs


async def test_a_dropped_redis_connection_opened_again_is_counted(
    redis_proxy: tuple[TcpProxy, str],
) -> None:
    """`chat_redis_reconnects_total`: the room log's client, through a proxy that is cut."""
    from prometheus_client import REGISTRY

    from chat.realtime.redis_client import command_client

    def reconnects() -> float:
        return REGISTRY.get_sample_value("chat_redis_reconnects_total") or 0.0

    proxy, url = redis_proxy
    client = command_client(url, max_connections=4)
    try:
        await client.ping()
        before = reconnects()
        proxy.cut()
        proxy.restore()
        await client.ping()  # its connection was closed: it connects again (a retry)
        assert reconnects() - before == 1
        await client.ping()
        assert reconnects() - before == 1
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()
