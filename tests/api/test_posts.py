"""The POST endpoints against a real daphne: the WebSocket's validation and limits as HTTP
statuses and JSON errors, CSRF for sessions, bearer tokens for programs."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ASK_BURST, PASSWORD, Server, sse, wait_for
from tests.sse_client import Comment, Event, is_end

pytestmark = pytest.mark.slow


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return dict(error)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "bad_json"),
        (b"\xff\xfe", 400, "bad_json"),
        (b"[1, 2]", 400, "bad_frame"),
        (b"{}", 400, "invalid"),
        (b'{"text": 42}', 400, "invalid"),
        (b'{"text": "   "}', 400, "invalid"),
        (b'{"text": "hi", "client_id": ""}', 400, "invalid"),
        (b'{"text": "hi", "client_id": 7}', 400, "invalid"),
        (b'{"text": "' + b"x" * 4001 + b'"}', 413, "too_long"),
        (b'{"text": "hi", "client_id": "' + b"c" * 65 + b'"}', 413, "too_long"),
        (b'{"text": "' + b"x" * 70_000 + b'"}', 413, "too_long"),
    ],
)
async def test_question_validation_matches_the_websocket_codes(
    api_server: Server, http: httpx.AsyncClient, body: bytes, status: int, code: str
) -> None:
    for path in ("/api/rooms/valid/questions", "/api/ask"):
        response = await http.post(path, content=body, headers=api_server.auth("grace"))
        error_of(response, status, code)


async def test_routing_errors_are_json(api_server: Server, http: httpx.AsyncClient) -> None:
    auth = api_server.auth("grace")
    error_of(await http.post("/api/rooms/no.dots/questions", json={"text": "hi"}), 404, "not_found")
    error_of(await http.get("/api/rooms/valid/questions", headers=auth), 405, "method_not_allowed")
    error_of(await http.get("/api/nothing-here", headers=auth), 404, "not_found")
    response = await http.post("/api/rooms/valid/answers/a_nope/cancel", headers=auth)
    error_of(response, 404, "not_found")


async def test_duplicate_client_id_then_rate_limit_with_retry_after(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    auth = api_server.auth("heidi")
    path = "/api/rooms/limits/questions"
    first = await http.post(path, json={"text": "Hours?", "client_id": "c-1"}, headers=auth)
    assert first.status_code == 202
    question_id = first.json()["id"]
    for _ in range(ASK_BURST - 1):
        again = await http.post(path, json={"text": "Hours?", "client_id": "c-1"}, headers=auth)
        assert again.status_code == 200
        assert again.json() == {"id": question_id, "duplicate": True}
    limited = await http.post(path, json={"text": "Hours?", "client_id": "c-2"}, headers=auth)
    error = error_of(limited, 429, "rate_limited")
    assert isinstance(error["retry_after"], float) and error["retry_after"] > 0
    assert int(limited.headers["Retry-After"]) >= error["retry_after"]
    # The same bucket as every other ask of this person.
    error_of(
        await http.post("/api/ask", json={"text": "Hours?"}, headers=auth), 429, "rate_limited"
    )


async def test_busy_then_cancel_by_the_asker_only(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    auth = api_server.auth("ivan")
    room = "busy"
    slow = "Tell me everything. [[sim tps=10 tokens=100]]"
    async with sse(http, f"/api/rooms/{room}/events", headers=auth) as r:
        await r.event()
        for _ in range(2):  # CHAT_MAX_ANSWERS_PER_USER
            response = await http.post(
                f"/api/rooms/{room}/questions", json={"text": slow}, headers=auth
            )
            assert response.status_code == 202
        response = await http.post(
            f"/api/rooms/{room}/questions", json={"text": slow}, headers=auth
        )
        error_of(response, 429, "busy")
        starts = await r.until(lambda e: e.event == "answer.start")
        starts += await r.until(lambda e: e.event == "answer.start")
        answer_ids = [e.json()["id"] for e in starts if e.event == "answer.start"]
        assert len(answer_ids) == 2
        cancel = f"/api/rooms/{room}/answers/{answer_ids[0]}/cancel"
        error_of(await http.post(cancel, headers=api_server.auth("alice")), 403, "forbidden")
        error_of(
            await http.post(f"/api/rooms/other/answers/{answer_ids[0]}/cancel", headers=auth),
            404,
            "not_found",
        )
        for answer_id in answer_ids:
            response = await http.post(
                f"/api/rooms/{room}/answers/{answer_id}/cancel", headers=auth
            )
            assert response.status_code == 202 and response.json() == {"id": answer_id}
        ends = [e.json() for e in await r.until(is_end)]
        ends += [e.json() for e in await r.until(is_end)]
    statuses = {e["answer_id"]: e["status"] for e in ends if e["type"] == "answer.end"}
    assert statuses == dict.fromkeys(answer_ids, "cancelled")


async def test_bearer_tokens(api_server: Server, http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/rooms/tokens/questions", json={"text": "Hi?"}, headers=api_server.auth("judy")
    )
    assert response.status_code == 202
    for header in ("Bearer rc_not-a-key", "Bearer", "Basic YWxpY2U6cHc=", "rc_no_scheme"):
        response = await http.post(
            "/api/rooms/tokens/questions", json={"text": "Hi?"}, headers={"Authorization": header}
        )
        error_of(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        response = await http.get("/api/rooms/tokens/events", headers={"Authorization": header})
        error_of(response, 401, "unauthenticated")


async def test_session_posts_need_the_csrf_token(api_server: Server) -> None:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=20) as browser:
        page = await browser.get("/accounts/login/")
        form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert form_token is not None
        login = await browser.post(
            "/accounts/login/",
            data={
                "username": "frank",
                "password": PASSWORD,
                "csrfmiddlewaretoken": form_token.group(1),
            },
        )
        assert login.status_code == 302 and "sessionid" in browser.cookies
        path = "/api/rooms/session/questions"
        error_of(await browser.post(path, json={"text": "Hi?"}), 403, "forbidden")
        wrong = {"X-CSRFToken": "x" * 64}
        error_of(await browser.post(path, json={"text": "Hi?"}, headers=wrong), 403, "forbidden")
        good = {"X-CSRFToken": browser.cookies["csrftoken"]}
        response = await browser.post(path, json={"text": "Hi?"}, headers=good)
        assert response.status_code == 202, response.text
        # The session's user is who asked.
        async with sse(browser, "/api/rooms/session/events") as r:
            welcome = (await r.event()).json()
        assert welcome["user"]["name"] == "frank"
        assert welcome["history"][0]["user"]["name"] == "frank"


async def test_guests_get_a_session_and_post_with_its_csrf_token(api_server: Server) -> None:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=20) as browser:
        async with sse(browser, "/api/rooms/guests/events") as r:
            welcome = (await r.event()).json()
        assert "sessionid" in browser.cookies and "csrftoken" in browser.cookies
        path = "/api/rooms/guests/questions"
        error_of(await browser.post(path, json={"text": "Hi?"}), 403, "forbidden")
        headers = {"X-CSRFToken": browser.cookies["csrftoken"]}
        response = await browser.post(path, json={"text": "Hi?"}, headers=headers)
        assert response.status_code == 202
        async with sse(browser, "/api/rooms/guests/events") as r:
            again = (await r.event()).json()
        assert again["user"] == welcome["user"]  # The same guest, kept in the session.
        assert again["history"][0]["user"] == welcome["user"]


async def test_ask_streams_one_answer_then_done(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    auth = api_server.auth("carol")
    async with sse(
        http, "/api/ask", method="POST", json={"text": "Latte? [[sim tps=100]]"}, headers=auth
    ) as r:
        items = await r.rest()
    events = [i for i in items if isinstance(i, Event)]
    assert all(e.id is None for e in events)
    assert events[-1].data == "[DONE]" and events[-1].event == "message"
    answer = [e.json() for e in events[:-1]]
    assert [a["type"] for a in answer[:2]] == ["answer.sources", "answer.delta"]
    assert [e.event for e in events[:-1]] == [a["type"] for a in answer]
    end = answer[-1]
    assert end["type"] == "answer.end" and end["status"] == "complete"
    assert end["text"] == "".join(a["text"] for a in answer if a["type"] == "answer.delta")
    assert end["usage"]["completion_tokens"] > 0
    assert {"id", "title", "source", "snippet", "score"} <= set(answer[0]["sources"][0])
    assert len({a["answer_id"] for a in answer}) == 1
    assert not any(isinstance(i, Comment) and i.text != "keep-alive" for i in items)


async def test_ask_reports_an_llm_failure_in_answer_end(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    async with sse(
        http,
        "/api/ask",
        method="POST",
        json={"text": "Hi [[sim fault=400]]"},
        headers=api_server.auth("dave"),
    ) as r:
        items = await r.rest()
    events = [i for i in items if isinstance(i, Event)]
    assert events[-1].data == "[DONE]"
    end = events[-2].json()
    assert end["type"] == "answer.end" and end["status"] == "failed"
    assert end["error"]["code"] == "llm_rejected"


async def test_leaving_ask_early_aborts_the_upstream_request(
    api_server: Server, http: httpx.AsyncClient, api_simulator: Any
) -> None:
    """A direct answer belongs to its caller: leaving stops it and its LLM request."""
    marker = f"abort-{uuid.uuid4().hex}"
    body = {"text": f"{marker} [[sim tps=5 tokens=100]]"}
    async with sse(
        http, "/api/ask", method="POST", json=body, headers=api_server.auth("erin")
    ) as r:
        await r.until(lambda e: e.event == "answer.delta")

    def aborted() -> bool:
        for record in api_simulator.stats():
            if any(marker in m.get("content", "") for m in record.messages):
                return bool(record.client_disconnected_early)
        return False

    await wait_for(aborted)


async def test_versions_over_http_regenerate_continue_and_edit(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    """The WebSocket's `regenerate`, `continue` and `edit` as POSTs: the same checks and codes,
    the new versions on the events stream. (Each costs an ask of the rate limit, refused or
    not, as an `ask` does: the asker's three go to the ask, the continue and the edit.)"""
    auth, other = api_server.auth("vera"), api_server.auth("walt")
    staff = api_server.auth("judy")
    room = f"versions-{uuid.uuid4().hex[:6]}"
    async with sse(http, f"/api/rooms/{room}/events", headers=auth) as r:
        await r.event()
        asked = await http.post(
            f"/api/rooms/{room}/questions",
            json={"text": "Cakes? [[sim tokens=20 fault=truncate fault_after=5 tps=0]]"},
            headers=auth,
        )
        assert asked.status_code == 202
        question_id = asked.json()["id"]
        start = (await r.until(lambda e: e.event == "answer.start"))[-1].json()
        failed = [e.json() for e in await r.until(is_end) if e.event == "answer.end"][-1]
        assert failed["status"] == "failed"
        answer = f"/api/rooms/{room}/answers/{start['id']}"

        error_of(await http.post(f"{answer}/continue", headers=other), 403, "forbidden")
        error_of(
            await http.post(f"/api/rooms/{room}/answers/a_nope/regenerate", headers=other),
            404,
            "not_found",
        )
        continued = await http.post(f"{answer}/continue", headers=auth)
        assert continued.status_code == 202
        second = (await r.until(lambda e: e.event == "answer.start"))[-1].json()
        assert second == {
            **second,
            "id": continued.json()["id"],
            "version": 2,
            "continues": start["id"],
        }
        end = [e.json() for e in await r.until(is_end) if e.event == "answer.end"][-1]
        assert end["status"] == "complete" and end["text"].startswith(failed["text"])
        error_of(await http.post(f"{answer}/continue", headers=staff), 409, "conflict")

        regenerated = await http.post(f"{answer}/regenerate", headers=staff)
        assert regenerated.status_code == 202
        third = (await r.until(lambda e: e.event == "answer.start"))[-1].json()
        assert (third["id"], third["version"]) == (regenerated.json()["id"], 3)
        await r.until(is_end)

        edit = f"/api/rooms/{room}/questions/{question_id}/edit"
        error_of(await http.post(edit, json={"text": "Mine now"}, headers=other), 403, "forbidden")
        error_of(await http.post(edit, json={"text": " "}, headers=auth), 400, "invalid")
        error_of(await http.post(edit, content=b"not json", headers=auth), 400, "bad_json")
        body = {"text": "Which cakes? [[sim tokens=3]]", "client_id": "e-1"}
        edited = await http.post(edit, json=body, headers=auth)
        assert edited.status_code == 202
        question = (await r.until(lambda e: e.event == "question"))[-1].json()
        assert (question["id"], question["edits"]) == (edited.json()["id"], question_id)
        await r.until(is_end)
