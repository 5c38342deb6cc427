"""A room's documents over HTTP against a real daphne: upload (multipart, bearer token or
session + CSRF), the background indexing to `document.added`, an answer citing the file,
replace, delete (unfindable at once), and each bad file refused with its code, leaving nothing
behind."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import DOCUMENT_MAX_BYTES, ROOM_DOCUMENTS, Server, sse, wait_for
from tests.documents import samples
from tests.servers import BIN, ROOT
from tests.sse_client import Event, is_end

pytestmark = pytest.mark.slow

_MAKE_ROOM = """
from django.contrib.auth.models import User
from chat.models import Room, RoomMembership
room = Room.objects.create(name=%r, owner=User.objects.get(username=%r), visibility=%r)
for name, role in %r:
    RoomMembership.objects.create(room=room, user=User.objects.get(username=name), role=role)
"""


def make_room(
    server: Server, room: str, owner: str, *, private: bool = False, **roles: str
) -> None:
    code = _MAKE_ROOM % (room, owner, "private" if private else "public", list(roles.items()))
    subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=server.env,
        check=True,
        capture_output=True,
    )


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return str(error["message"])


async def upload(
    http: httpx.AsyncClient,
    room: str,
    name: str,
    data: bytes,
    headers: dict[str, str],
    content_type: str = "text/plain",
) -> httpx.Response:
    return await http.post(
        f"/api/rooms/{room}/documents",
        files={"file": (name, data, content_type)},
        headers=headers,
    )


async def listing(http: httpx.AsyncClient, room: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get(f"/api/rooms/{room}/documents", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def indexed(
    http: httpx.AsyncClient, room: str, upload_id: str, headers: dict[str, str]
) -> dict[str, Any]:
    """Polls the listing, as the page does, until the upload is done; returns it."""

    async def done() -> dict[str, Any] | None:
        for item in (await listing(http, room, headers))["uploads"]:
            if item["id"] == upload_id and item["status"] != "indexing":
                return dict(item)
        return None

    found = await wait_for(done, timeout=60, interval=0.2)
    assert found["status"] == "done", found
    return dict(found)


async def ask_sources(
    http: httpx.AsyncClient, server: Server, user: str, room: str, text: str
) -> list[dict[str, Any]]:
    async with sse(http, f"/api/rooms/{room}/events", headers=server.auth(user)) as r:
        await r.event()  # welcome
        response = await http.post(
            f"/api/rooms/{room}/questions", json={"text": text}, headers=server.auth(user)
        )
        assert response.status_code == 202, response.text
        events = await r.until(is_end, timeout=30)
    sources = [e.json() for e in events if e.event == "answer.sources"]
    assert len(sources) == 1
    return list(sources[0]["sources"])


SPECIAL = (
    "Weekly special, week 48: the persimmon cheesecake costs 7,200 won and is sold until "
    "Sunday. Ask for it at the counter."
)
SPECIAL_2 = (
    "Weekly special, week 49: the chestnut mont blanc costs 8,100 won and is sold until "
    "Sunday. Ask for it at the counter."
)
QUESTION = "How much is the weekly special cheesecake this week?"


async def test_an_owner_uploads_the_room_hears_it_and_answers_cite_it(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    room = "docs-upload"
    make_room(api_server, room, "olga", pavel="moderator")
    auth = api_server.auth("olga")
    async with sse(http, f"/api/rooms/{room}/events", headers=api_server.auth("pavel")) as r:
        await r.event()
        response = await upload(http, room, "special.txt", SPECIAL.encode(), auth)
        assert response.status_code == 202, response.text
        started = response.json()["upload"]
        assert started["status"] == "indexing" and started["replaces"] is False
        # The other moderator sees the upload, and then its notice with a seq.
        moderator_view = await listing(http, room, api_server.auth("pavel"))
        assert started["id"] in [u["id"] for u in moderator_view["uploads"]]
        added: list[Event] = await r.until(lambda e: e.event == "document.added", timeout=60)
    event = added[-1].json()
    assert added[-1].id == str(event["seq"])
    assert event["document"]["name"] == "special.txt"
    assert event["document"]["user"]["name"] == "olga" and event["replaced"] is False
    done = await indexed(http, room, started["id"], auth)
    assert done["progress"] == 1 and done["chunks"] == event["document"]["chunks"] >= 1

    documents = (await listing(http, room, api_server.auth("quinn")))["documents"]
    assert [(d["name"], d["size"]) for d in documents] == [("special.txt", len(SPECIAL))]
    assert "uploads" not in await listing(http, room, api_server.auth("quinn"))

    sources = await ask_sources(http, api_server, "olga", room, QUESTION)
    assert sources[0]["source"] == "special.txt", sources
    assert "persimmon" in sources[0]["snippet"]
    # The shared knowledge is searched too (its passages fill the rest).
    assert any(s["source"] != "special.txt" for s in sources)


async def test_a_replace_swaps_the_passages_and_a_delete_takes_them_out_at_once(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    room = "docs-replace"
    make_room(api_server, room, "rosa")
    auth = api_server.auth("rosa")
    first = await upload(http, room, "special.txt", SPECIAL.encode(), auth)
    await indexed(http, room, first.json()["upload"]["id"], auth)
    before = await ask_sources(http, api_server, "rosa", room, QUESTION)
    assert "persimmon" in before[0]["snippet"]

    second = await upload(http, room, "special.txt", SPECIAL_2.encode(), auth)
    assert second.status_code == 202 and second.json()["upload"]["replaces"] is True
    await indexed(http, room, second.json()["upload"]["id"], auth)
    documents = (await listing(http, room, auth))["documents"]
    assert [(d["name"], d["size"]) for d in documents] == [("special.txt", len(SPECIAL_2))]
    after = await ask_sources(http, api_server, "rosa", room, "weekly special mont blanc price")
    ours = [s for s in after if s["source"] == "special.txt"]
    assert len(ours) == 1 and "chestnut" in ours[0]["snippet"], after

    response = await http.delete(f"/api/rooms/{room}/documents/special.txt", headers=auth)
    assert response.status_code == 200 and response.json() == {
        "name": "special.txt",
        "deleted": True,
    }
    gone = await ask_sources(http, api_server, "rosa", room, "weekly special mont blanc price")
    assert all(s["source"] != "special.txt" for s in gone), gone
    assert (await listing(http, room, auth))["documents"] == []
    # Answers already given keep their sources as stored.
    async with sse(http, f"/api/rooms/{room}/events", headers=auth) as r:
        history = (await r.event()).json()["history"]
    cited = [s["source"] for m in history if m["role"] == "assistant" for s in m.get("sources", [])]
    assert "special.txt" in cited
    error_of(
        await http.delete(f"/api/rooms/{room}/documents/special.txt", headers=auth),
        404,
        "not_found",
    )


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("menu.pdf", samples.encrypted_pdf(["Secret menu"]), 400, "invalid"),
        ("menu.pdf", samples.truncated_pdf(["Latte 4,500 won"] * 40), 400, "invalid"),
        ("menu.docx", samples.zip_bomb_docx(100), 400, "invalid"),
        ("menu.pdf", samples.EXE, 415, "unsupported_type"),
        ("menu.txt", samples.EXE, 415, "unsupported_type"),
        ("setup.exe", samples.EXE, 415, "unsupported_type"),
        ("menu.txt", b"x" * (DOCUMENT_MAX_BYTES + 1), 413, "too_long"),
        ("menu.txt", b"", 400, "invalid"),
        ("../../etc/.passwd.txt", b"hello", 400, "invalid"),
    ],
)
async def test_each_bad_file_is_refused_and_leaves_nothing(
    api_server: Server, http: httpx.AsyncClient, name: str, data: bytes, status: int, code: str
) -> None:
    room = "docs-bad"
    auth = api_server.auth("judy")  # staff: may upload to any room
    message = error_of(await upload(http, room, name, data, auth), status, code)
    assert "/tmp" not in message and "roomchat-upload" not in message
    listed = await listing(http, room, auth)
    assert listed["documents"] == [] and listed.get("uploads", []) == []


async def test_an_oversized_body_is_refused_before_it_is_read(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    auth = api_server.auth("judy")
    big = b"x" * (DOCUMENT_MAX_BYTES + 200 * 1024)
    # By its Content-Length, before the multipart body is parsed.
    error_of(await upload(http, "docs-big", "big.txt", big, auth), 413, "too_long")

    # Without a length (chunked): refused, not read as an empty body.
    boundary = "roomchatboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await http.post(
        "/api/rooms/docs-big/documents",
        content=chunks(),
        headers={**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "Content-Length" in error_of(response, 400, "invalid")
    # Not multipart at all.
    error_of(
        await http.post("/api/rooms/docs-big/documents", content=b"hello", headers=auth),
        415,
        "unsupported_type",
    )
    assert (await listing(http, "docs-big", auth))["documents"] == []


async def test_members_guests_and_outsiders_are_refused(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    make_room(api_server, "docs-perm", "pavel", quinn="member")
    make_room(api_server, "docs-private", "pavel", private=True)
    data = b"Opening hours: 9 to 6."
    error_of(
        await upload(http, "docs-perm", "a.txt", data, api_server.auth("quinn")), 403, "forbidden"
    )
    error_of(
        await upload(http, "docs-private", "a.txt", data, api_server.auth("quinn")),
        404,
        "not_found",
    )
    error_of(
        await http.get("/api/rooms/docs-private/documents", headers=api_server.auth("quinn")),
        404,
        "not_found",
    )
    error_of(
        await http.delete("/api/rooms/docs-perm/documents/a.txt", headers=api_server.auth("quinn")),
        403,
        "forbidden",
    )
    # A guest with a session and a valid CSRF token: still not a moderator.
    async with httpx.AsyncClient(base_url=api_server.url, timeout=20) as guest:
        async with sse(guest, "/api/rooms/docs-perm/events") as r:
            await r.event()  # welcome: a guest session, and the csrftoken cookie
        token = guest.cookies.get("csrftoken")
        assert token
        headers = {"X-CSRFToken": token, "Origin": api_server.url, "Referer": api_server.url}
        error_of(await upload(guest, "docs-perm", "a.txt", data, headers), 403, "forbidden")
        assert (await listing(guest, "docs-perm", {}))["documents"] == []
        # Without the CSRF token, a session write is refused too.
        error_of(await upload(guest, "docs-perm", "a.txt", data, {}), 403, "forbidden")


async def test_the_rooms_file_limit(api_server: Server, http: httpx.AsyncClient) -> None:
    make_room(api_server, "docs-full", "quinn")
    auth = api_server.auth("quinn")
    for number in range(ROOM_DOCUMENTS):
        response = await upload(http, "docs-full", f"note-{number}.md", b"# Note\n\nHello.", auth)
        assert response.status_code == 202, response.text
        await indexed(http, "docs-full", response.json()["upload"]["id"], auth)
    message = error_of(
        await upload(http, "docs-full", "one-more.md", b"# More", auth), 413, "limit_reached"
    )
    assert str(ROOM_DOCUMENTS) in message
    # Replacing one is not one more.
    response = await upload(http, "docs-full", "note-0.md", b"# Note\n\nAgain.", auth)
    assert response.status_code == 202, response.text
    await indexed(http, "docs-full", response.json()["upload"]["id"], auth)
    await asyncio.sleep(0)


async def test_one_file_in_the_file_field_and_korean_names(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    make_room(api_server, "docs-names", "olga")
    auth = api_server.auth("olga")
    two = [("file", ("a.txt", b"one", "text/plain")), ("file", ("b.txt", b"two", "text/plain"))]
    response = await http.post("/api/rooms/docs-names/documents", files=two, headers=auth)
    assert "one file" in error_of(response, 400, "invalid")
    other = {"document": ("a.txt", b"one", "text/plain")}
    response = await http.post("/api/rooms/docs-names/documents", files=other, headers=auth)
    error_of(response, 400, "invalid")
    assert (await listing(http, "docs-names", auth)) == {
        "documents": [],
        "shared": True,
        "uploads": [],
    }

    name = "이번 주 메뉴.md"
    response = await upload(http, "docs-names", name, "# 이번 주\n\n유자차 5,500원".encode(), auth)
    assert response.status_code == 202, response.text
    await indexed(http, "docs-names", response.json()["upload"]["id"], auth)
    listed = (await listing(http, "docs-names", auth))["documents"]
    assert [d["name"] for d in listed] == [name]
    response = await http.delete(
        "/api/rooms/docs-names/documents/" + httpx.URL(path=name).raw_path.decode(), headers=auth
    )
    assert response.status_code == 200 and response.json()["name"] == name
