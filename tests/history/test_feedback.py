"""Feedback on answers through the real ASGI application (SQLite here; PostgreSQL and two
workers in tests/cluster/test_history.py): one per person, changeable, removable, counts to
the whole room as `answer.feedback` room events, in every later `welcome`, and refused
clearly for what is not an answer of a room the person may read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient

from chat.models import Feedback, FeedbackCount, Message, Room
from chat.runtime import reset_runtime
from tests.conftest import Client, connect, wait_for
from tests.history.guests import browser_guest

pytestmark = pytest.mark.django_db(transaction=True)


async def _answered(client: Client, text: str = "라떼 얼마예요?") -> str:
    frames = await client.answer(text)
    return str(frames[-1]["answer_id"])


async def _feedback(client: Client, answer_id: str, value: Any, rev: int = 1) -> dict[str, Any]:
    """Send feedback; the `answer.feedback` with `rev` (or an error) that follows."""
    await client.send({"type": "feedback", "answer_id": answer_id, "value": value})
    frames = await client.recv_until(
        lambda f: f["type"] == "error" or (f["type"] == "answer.feedback" and f["rev"] == rev)
    )
    return frames[-1]


async def test_one_vote_per_person_changed_and_taken_back_with_counts_for_everyone() -> None:
    alice, _ = await browser_guest("fb")
    bob, _ = await browser_guest("fb")
    answer_id = await _answered(alice)
    await bob.recv_until(lambda f: f["type"] == "answer.end")

    up = await _feedback(alice, answer_id, "up")
    assert (up["up"], up["down"], up["rev"]) == (1, 0, 1)
    assert await bob.recv_until(lambda f: f["type"] == "answer.feedback") == [up]
    again = await _feedback(bob, answer_id, "up", 2)
    assert (again["up"], again["down"]) == (2, 0)
    # The same choice twice changes nothing and tells nobody: the next event is the change.
    await alice.send({"type": "feedback", "answer_id": answer_id, "value": "up"})
    changed = await _feedback(alice, answer_id, "down", 3)
    assert (changed["up"], changed["down"], changed["rev"]) == (1, 1, 3)
    taken_back = await _feedback(bob, answer_id, None, 4)
    assert (taken_back["up"], taken_back["down"], taken_back["rev"]) == (0, 1, 4)
    assert taken_back["seq"] == changed["seq"] + 1

    fresh = await connect("fb")
    [answer] = [m for m in fresh.welcome["history"] if m["id"] == answer_id]
    assert answer["feedback"] == {"up": 0, "down": 1, "rev": 4}
    assert await Feedback.objects.filter(answer_id=answer_id).acount() == 1
    # A worker that starts afresh shows the same counts, from the database.
    for client in (alice, bob, fresh):
        await client.close()
    await reset_runtime()
    restarted = await connect("fb")
    [answer] = [m for m in restarted.welcome["history"] if m["id"] == answer_id]
    assert answer["feedback"] == {"up": 0, "down": 1, "rev": 4}
    await restarted.close()


async def test_a_resume_gets_the_feedback_event_in_order() -> None:
    alice, _ = await browser_guest("fb-resume")
    answer_id = await _answered(alice)
    cursor = alice.welcome["seq"]
    event = await _feedback(alice, answer_id, "down")
    resumed = await connect("fb-resume", query=f"after={cursor}")
    frames = await resumed.recv_until(lambda f: f["type"] == "answer.feedback")
    assert frames[-1] == event
    for client in (alice, resumed):
        await client.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"answer_id": "a_nope", "value": "up"}, "not_found"),
        ({"answer_id": "", "value": "up"}, "invalid"),
        ({"answer_id": "x" * 41, "value": "up"}, "invalid"),
        ({"answer_id": "a_1"}, "invalid"),
        ({"answer_id": "a_1", "value": "UP"}, "invalid"),
        ({"answer_id": "a_1", "value": "up\n"}, "invalid"),
        ({"answer_id": "a_1", "value": 1}, "invalid"),
        ({"answer_id": "a_1", "value": ["up"]}, "invalid"),
        ({"answer_id": ["a_1"], "value": "up"}, "invalid"),
    ],
)
async def test_bad_feedback_is_refused_and_the_socket_stays(
    frame: dict[str, Any], code: str
) -> None:
    alice, _ = await browser_guest("fb-bad")
    await alice.send({"type": "feedback", **frame})
    error = await alice.recv()
    assert error["type"] == "error" and error["code"] == code
    await alice.send({"type": "ping"})
    assert (await alice.recv())["type"] == "pong"
    await alice.close()
    assert await Feedback.objects.acount() == 0


async def test_a_question_id_or_another_rooms_answer_is_not_found() -> None:
    alice, _ = await browser_guest("fb-here")
    frames = await alice.answer("hello")
    question_id = frames[0]["id"]
    elsewhere, _ = await browser_guest("fb-there")
    for other in (question_id, frames[-1]["answer_id"]):
        await elsewhere.send({"type": "feedback", "answer_id": other, "value": "up"})
        error = await elsewhere.recv()
        assert error["code"] == "not_found"
    await alice.send({"type": "feedback", "answer_id": question_id, "value": "up"})
    assert (await alice.recv())["code"] == "not_found"
    assert await FeedbackCount.objects.acount() == 0
    for client in (alice, elsewhere):
        await client.close()


async def test_a_guest_without_a_session_may_not_vote_on_either_transport() -> None:
    """Without a session a client is a new guest at every connection or request: it could
    vote again and again. Signed in, or a guest the room page gave a session, it may."""
    alice, _ = await browser_guest("fb-nosession")
    answer_id = await _answered(alice)
    script = await connect("fb-nosession")
    await script.send({"type": "feedback", "answer_id": answer_id, "value": "down"})
    assert (await script.recv())["code"] == "forbidden"
    refused = await AsyncClient().post(
        f"/api/rooms/fb-nosession/answers/{answer_id}/feedback",
        {"value": "down"},
        "application/json",
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert await Feedback.objects.acount() == 0
    # The same program keeping its cookie is the same guest from its second request on.
    http = AsyncClient()
    path = f"/api/rooms/fb-nosession/answers/{answer_id}/feedback"
    assert (await http.post(path, {"value": "up"}, "application/json")).status_code == 403
    kept = await http.post(path, {"value": "up"}, "application/json")
    assert kept.status_code == 200 and kept.json()["up"] == 1
    for client in (alice, script):
        await client.close()


async def test_over_http_counts_come_back_and_mine_is_only_mine() -> None:
    alice = await connect("fb-http")
    answer_id = await _answered(alice)
    user = await User.objects.acreate(username="hana")
    http = AsyncClient()
    await http.aforce_login(user)
    path = f"/api/rooms/fb-http/answers/{answer_id}/feedback"
    given = await http.post(path, {"value": "down"}, "application/json")
    assert given.status_code == 200
    assert given.json() == {"answer_id": answer_id, "value": "down", "up": 0, "down": 1, "rev": 1}
    event = (await alice.recv_until(lambda f: f["type"] == "answer.feedback"))[-1]
    assert (event["down"], event["rev"]) == (1, 1)
    assert (await http.get("/api/rooms/fb-http/feedback")).json() == {"mine": {answer_id: "down"}}
    assert (await AsyncClient().get("/api/rooms/fb-http/feedback")).json() == {"mine": {}}
    bad = await http.post(path, {"value": "sideways"}, "application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"
    unknown = await http.post(
        "/api/rooms/fb-http/answers/a_x/feedback", {"value": "up"}, "application/json"
    )
    assert unknown.status_code == 404
    await alice.close()


async def test_a_private_room_takes_no_feedback_from_outsiders() -> None:
    owner = await User.objects.acreate(username="owner-fb")
    outsider = await User.objects.acreate(username="outsider-fb")
    await Room.objects.acreate(name="fb-private", owner=owner, visibility="private")
    http = AsyncClient()
    await http.aforce_login(owner)
    # The owner's own question and answer, over HTTP.
    asked = await http.post("/api/rooms/fb-private/questions", {"text": "hi"}, "application/json")
    assert asked.status_code == 202
    answer = await wait_for(
        lambda: (
            Message.objects.filter(room__name="fb-private", role="assistant")
            .exclude(status="streaming")
            .afirst()
        )
    )
    stranger = AsyncClient()
    await stranger.aforce_login(outsider)
    refused = await stranger.post(
        f"/api/rooms/fb-private/answers/{answer.id}/feedback", {"value": "down"}, "application/json"
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    for path in ("feedback", "history", "search?q=hi", "export"):
        response = await stranger.get(f"/api/rooms/fb-private/{path}")
        assert response.status_code == 404, path
    assert await FeedbackCount.objects.acount() == 0
    assert json.loads((await http.get("/api/rooms/fb-private/export")).content)["messages"]


def test_an_event_stream_gives_feedback_its_seq_as_the_event_id() -> None:
    """Over SSE it is a room event like any other: a reconnecting `EventSource` resumes
    after it (`Last-Event-ID`)."""
    from chat.api import sse
    from chat.protocol import answer_feedback_event, dumps

    frame = dumps({"seq": 9, **answer_feedback_event(answer_id="a_1", up=1, down=0, rev=1)})
    assert sse.frame_event(frame).startswith(b"id: 9\nevent: answer.feedback\ndata: ")
