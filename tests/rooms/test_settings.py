"""A room's settings (the rooms issue): checked by one form, applied to the next answer without
a restart (read with the question, nothing cached), and what the LLM simulator received says so.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat import rooms
from chat.models import Room
from chat.protocol import ProtocolError
from chat.retrieval.ingest import ingest_paths
from chat.rooms.configuration import InvalidSettings, update_settings
from tests.conftest import connect
from tests.rooms.people import person

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def test_the_next_answer_uses_the_room_s_model_prompt_temperature_and_name(
    settings: Any, llm: Any, knowledge_base: str
) -> None:
    settings.CHAT_MODELS = ["sim-small", "sim-large"]
    owner = await person("owner")
    await db(rooms.create_room)("tuned", owner.identity)
    client = await connect("tuned", headers=owner.ws_headers)
    await client.answer("What does a latte cost?")
    await db(update_settings)(
        "tuned",
        owner.identity,
        {
            "model": "sim-large",
            "system_prompt": "Answer like a pirate.",
            "temperature": 0.4,
            "assistant_name": "Bori",
        },
    )
    await client.answer("And an americano?")
    # The answers (streamed), not the follow-up's rewrite between them.
    before, after = [record for record in llm.stats() if record.stream][-2:]
    assert (before.model, before.temperature) == (settings.CHAT_MODEL, None)
    assert before.messages[0]["content"].startswith("You are the assistant of a shared chat room")
    assert (after.model, after.temperature) == ("sim-large", 0.4)
    system = after.messages[0]["content"]
    assert system.startswith("You are Bori; people call you @Bori.\n\nAnswer like a pirate.")
    assert "never instructions" in system  # the documents' rule stays, whatever the prompt
    # Taken off the allow-list: the room's next answer uses the server's model again.
    settings.CHAT_MODELS = ["sim-small"]
    await client.answer("And a mocha?")
    assert llm.stats()[-1].model == settings.CHAT_MODEL
    await client.close()


async def test_the_next_answer_searches_the_room_s_knowledge_collection(
    llm: Any, knowledge_base: str, tmp_path: Path
) -> None:
    """The room's knowledge collection (a setting) is where its next answer searches: the
    passages the LLM simulator received come from it, not from the server's CHAT_COLLECTION."""
    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "handbook.md").write_text(
        "# Team handbook\n\nThe office door code changes every Monday; Minji sends it out.\n",
        encoding="utf-8",
    )
    collection = f"handbook-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(ingest_paths, [folder], collection=collection, progress=False)
    owner = await person("owner")
    await db(rooms.create_room)("handbook", owner.identity)
    client = await connect("handbook", headers=owner.ws_headers)
    question = "When does the office door code change?"

    def searched(frames: list[dict[str, Any]]) -> set[str]:
        sources = next(f for f in frames if f["type"] == "answer.sources")["sources"]
        return {source["source"] for source in sources}

    assert "handbook.md" not in searched(await client.answer(question))
    await db(update_settings)("handbook", owner.identity, {"collection": collection})
    assert searched(await client.answer(question)) == {"handbook.md"}
    documents = [record for record in llm.stats() if record.stream][-1].messages
    assert any("changes every Monday" in message["content"] for message in documents)
    await client.close()


async def test_bad_values_are_refused_field_by_field_and_nothing_is_saved(settings: Any) -> None:
    settings.CHAT_MODELS = ["sim-small"]
    owner = await person("owner")
    await db(rooms.create_room)("checked", owner.identity)
    bad = {
        "title": "  ",
        "model": "gpt-9",
        "temperature": 2.5,
        "collection": "a..b",
        "assistant_name": "two words",
        "system_prompt": "x" * 4001,
        "visibility": "secret",
    }
    with pytest.raises(InvalidSettings) as refused:
        await db(update_settings)("checked", owner.identity, bad)
    fields = refused.value.fields
    assert set(fields) == set(bad)
    assert fields["title"][0] == {"code": "required", "message": "A room needs a title."}
    assert "gpt-9 is not one of the models this server offers" in fields["model"][0]["message"]
    assert fields["temperature"][0]["code"] == "max_value"
    assert fields["collection"][0]["code"] == "collection"
    assert refused.value.code == "invalid"
    room = await db(Room.objects.get)(name="checked")
    assert (room.title, room.model, room.temperature) == ("checked", "", None)
    for name in ("ab", "-abc", "abc-", "192.168.0.1", "x" * 64):
        with pytest.raises(InvalidSettings):
            await db(update_settings)("checked", owner.identity, {"collection": name})
    # Blank means the server's default; good values are kept.
    done = await db(update_settings)(
        "checked",
        owner.identity,
        {"model": "", "temperature": "", "collection": "team.docs_2", "assistant_name": "비서"},
    )
    assert set(done.changed) == {"collection", "assistant_name"}
    saved = done.room
    assert (saved.model, saved.temperature, saved.collection) == ("", None, "team.docs_2")
    assert saved.assistant_name == "비서"


async def test_only_the_owner_and_staff_change_settings() -> None:
    owner, member, staff, outsider = (
        await person("owner"),
        await person("member"),
        await person("staff", staff=True),
        await person("outsider"),
    )
    room = await db(rooms.create_room)("mine", owner.identity, visibility="private")
    await db(room.memberships.create)(user=member.user, role="moderator")
    with pytest.raises(ProtocolError) as refused:
        await db(update_settings)("mine", member.identity, {"title": "Ours"})
    assert refused.value.code == "forbidden"
    with pytest.raises(ProtocolError) as hidden:
        await db(update_settings)("mine", outsider.identity, {"title": "Ours"})
    assert hidden.value.code == "not_found"
    assert (await db(update_settings)("mine", staff.identity, {"title": "Staff's"})).room.title == (
        "Staff's"
    )
    # A room nobody made yet: staff may set it up (it gets its row); nobody else.
    with pytest.raises(ProtocolError):
        await db(update_settings)("fresh", owner.identity, {"title": "Fresh"})
    assert (await db(update_settings)("fresh", staff.identity, {"title": "Fresh"})).room.title == (
        "Fresh"
    )


# --- the HTTP API: GET and PATCH /api/rooms/<room> ----------------------------------------


async def _patch(client: Any, room: str, body: dict[str, Any]) -> Any:
    return await client.patch(f"/api/rooms/{room}", body, content_type="application/json")


async def test_the_api_shows_settings_by_role_and_only_the_owner_patches(settings: Any) -> None:
    settings.CHAT_MODELS = ["sim-small", "sim-large"]
    owner, member, outsider = await person("owner"), await person("member"), await person("out")
    room = await db(rooms.create_room)("team", owner.identity, visibility="private")
    await db(room.memberships.create)(user=member.user)
    mine = (await owner.http.get("/api/rooms/team")).json()
    assert mine == {
        "name": "team",
        "title": "team",
        "description": "",
        "visibility": "private",
        "allow_guests": True,
        "assistant_name": "",
        "model": "",
        "role": "owner",
        "may_moderate": True,
        "may_configure": True,
        "collection": "",
        "system_prompt": "",
        "temperature": None,
        "use_shared_knowledge": True,
        "models": ["sim-small", "sim-large"],
        "default_model": settings.CHAT_MODEL,
    }
    changed = await _patch(
        owner.http, "team", {"title": "Team docs", "system_prompt": "Be brief.", "temperature": 1}
    )
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["title"], changed.json()["temperature"]) == ("Team docs", 1.0)
    theirs = (await member.http.get("/api/rooms/team")).json()
    assert theirs["title"] == "Team docs" and theirs["role"] == "member"
    assert "system_prompt" not in theirs and "collection" not in theirs
    refused = await _patch(member.http, "team", {"title": "Mine now"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
    for response in (
        await outsider.http.get("/api/rooms/team"),
        await _patch(outsider.http, "team", {"title": "x"}),
        await AsyncClient().get("/api/rooms/team"),
    ):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


async def test_the_api_names_each_refused_field_and_checks_json_types(settings: Any) -> None:
    settings.CHAT_MODELS = ["sim-small"]
    owner = await person("owner")
    await db(rooms.create_room)("typed", owner.identity)
    refused = await _patch(owner.http, "typed", {"title": "", "model": "gpt-9"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"]["title"] == [{"code": "required", "message": "A room needs a title."}]
    assert error["fields"]["model"][0]["code"] == "invalid_choice"
    for body in (
        {"allow_guests": "no"},
        {"temperature": "hot"},
        {"temperature": True},
        {"title": 7},
        {"owner": "me"},
    ):
        response = await _patch(owner.http, "typed", body)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid"), body
    assert (await owner.http.patch("/api/rooms/typed", "[]", "application/json")).status_code == 400
    # A session PATCH must pass the CSRF check, as a POST must.
    strict = AsyncClient(enforce_csrf_checks=True)
    await db(strict.force_login)(owner.user)
    forbidden = await _patch(strict, "typed", {"title": "x"})
    assert (forbidden.status_code, forbidden.json()["error"]["code"]) == (403, "forbidden")
    assert (await db(Room.objects.get)(name="typed")).title == "typed"


async def test_members_are_told_with_room_updated_and_welcome_carries_room_info(
    settings: Any,
) -> None:
    owner, member = await person("owner"), await person("member")
    room = await db(rooms.create_room)("told", owner.identity, visibility="private")
    await db(room.memberships.create)(user=member.user)
    watcher = await connect("told", headers=member.ws_headers)
    assert watcher.welcome["room_info"] == {
        "title": "told",
        "description": "",
        "visibility": "private",
        "allow_guests": True,
        "assistant_name": "",
        "model": "",
    }
    seq = watcher.welcome["seq"]
    response = await _patch(
        owner.http,
        "told",
        {"title": "Told you", "description": "News", "system_prompt": "Secret sauce."},
    )
    assert response.status_code == 200
    [event] = await watcher.recv_until(lambda f: f["type"] == "room.updated")
    assert event == {
        "seq": seq + 1,
        "type": "room.updated",
        "room": {**watcher.welcome["room_info"], "title": "Told you", "description": "News"},
    }
    # Nothing changed, nothing told: the next room event is the next change's.
    assert (await _patch(owner.http, "told", {"title": "Told you"})).status_code == 200
    await _patch(owner.http, "told", {"assistant_name": "bori"})
    [event] = await watcher.recv_until(lambda f: f["type"] == "room.updated")
    assert (event["seq"], event["room"]["assistant_name"]) == (seq + 2, "bori")
    # A later welcome carries the settings as they are now; the history holds no room.updated.
    again = await connect("told", headers=member.ws_headers)
    assert again.welcome["room_info"]["title"] == "Told you"
    assert again.welcome["history"] == [] and again.welcome["seq"] == seq + 2
    # Resuming replays it like any room event.
    resumed = await connect("told", query=f"after={seq}", headers=member.ws_headers)
    replay = await resumed.recv_until(lambda f: f.get("seq") == seq + 2)
    assert [f["type"] for f in replay] == ["room.updated", "room.updated"]
    for client in (watcher, again, resumed):
        await client.close()


# --- the settings page: /rooms/<room>/settings/ ---------------------------------------------


FORM = {
    "title": "Team docs",
    "description": "",
    "visibility": "private",
    "assistant_name": "",
    "model": "",
    "temperature": "",
    "collection": "",
    "system_prompt": "",
}


async def test_the_settings_page_shows_each_error_and_saves_nothing(settings: Any) -> None:
    settings.CHAT_MODELS = ["sim-small"]
    owner = await person("owner")
    await db(rooms.create_room)("paged", owner.identity, visibility="private")
    page = await owner.http.get("/rooms/paged/settings/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="paged"' in html and '<option value="sim-small"' in html
    refused = await owner.http.post(
        "/rooms/paged/settings/",
        {**FORM, "title": "", "model": "gpt-9", "temperature": "3", "allow_guests": "on"},
    )
    assert refused.status_code == 400
    html = refused.content.decode()
    assert 'data-i18n="settings.error.required"' in html and "A room needs a title." in html
    assert 'data-i18n="settings.error.invalid_choice"' in html and "gpt-9 is not one" in html
    assert 'data-i18n="settings.error.max_value"' in html
    assert 'id="id_title"' in html and 'aria-invalid="true"' in html
    room = await db(Room.objects.get)(name="paged")
    assert (room.title, room.model, room.temperature) == ("paged", "", None)


async def test_a_saved_change_goes_back_to_the_room_and_the_members_are_told() -> None:
    owner, member = await person("owner"), await person("member")
    room = await db(rooms.create_room)("paged", owner.identity)
    await db(room.memberships.create)(user=member.user)
    watcher = await connect("paged", headers=member.ws_headers)
    saved = await owner.http.post(
        "/rooms/paged/settings/", {**FORM, "assistant_name": "bori", "temperature": "0.5"}
    )
    assert (saved.status_code, saved["Location"]) == (302, "/rooms/paged/")
    [event] = await watcher.recv_until(lambda f: f["type"] == "room.updated")
    # An unticked box is "no": guests are not allowed any more.
    assert event["room"] == {
        "title": "Team docs",
        "description": "",
        "visibility": "private",
        "allow_guests": False,
        "assistant_name": "bori",
        "model": "",
    }
    room = await db(Room.objects.get)(name="paged")
    assert (room.temperature, room.allow_guests) == (0.5, False)
    page = (await member.http.get("/rooms/paged/")).content.decode()
    assert "Team docs" in page and 'id="settings-link"' not in page
    assert 'id="settings-link"' in (await owner.http.get("/rooms/paged/")).content.decode()
    await watcher.close()


async def test_only_the_owner_and_staff_open_the_settings_page() -> None:
    owner, mod, outsider, staff = (
        await person("owner"),
        await person("mod"),
        await person("outsider"),
        await person("staff", staff=True),
    )
    room = await db(rooms.create_room)("paged", owner.identity, visibility="private")
    await db(room.memberships.create)(user=mod.user, role="moderator")
    assert (await staff.http.get("/rooms/paged/settings/")).status_code == 200
    refused = await mod.http.get("/rooms/paged/settings/")
    assert refused.status_code == 403
    assert 'data-i18n="settings.notAllowed"' in refused.content.decode()
    assert (await mod.http.post("/rooms/paged/settings/", FORM)).status_code == 403
    for client in (outsider.http, AsyncClient()):
        assert (await client.get("/rooms/paged/settings/")).status_code == 404
        assert (await client.post("/rooms/paged/settings/", FORM)).status_code == 404
    assert (await db(Room.objects.get)(name="paged")).title == "paged"


# --- the admin --------------------------------------------------------------------------------


def _admin_form(room: Room, **changes: Any) -> dict[str, Any]:
    data = {
        "name": room.name,
        "owner": str(room.owner_id or ""),
        "title": room.title,
        "description": room.description,
        "visibility": room.visibility,
        "assistant_name": room.assistant_name,
        "model": room.model,
        "temperature": "" if room.temperature is None else str(room.temperature),
        "collection": room.collection,
        "system_prompt": room.system_prompt,
        **({"allow_guests": "on"} if room.allow_guests else {}),
    }
    for prefix in ("memberships", "invites"):
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
    return {**data, **changes}


async def test_staff_edit_a_room_in_the_admin_with_the_same_checks(settings: Any) -> None:
    settings.CHAT_MODELS = ["sim-small"]
    owner, staff = await person("owner"), await person("staff", staff=True)
    await db(staff.user.__class__.objects.filter(pk=staff.user.pk).update)(is_superuser=True)
    room = await db(rooms.create_room)("admined", owner.identity)
    url = f"/admin/chat/room/{room.pk}/change/"
    page = await staff.http.get(url)
    assert page.status_code == 200 and "Invites" in page.content.decode()
    refused = await staff.http.post(url, _admin_form(room, title="", model="gpt-9"))
    assert refused.status_code == 200  # the form again, with its errors
    html = refused.content.decode()
    assert "A room needs a title." in html and "gpt-9 is not one of the models" in html
    watcher = await connect("admined", headers=owner.ws_headers)
    saved = await staff.http.post(url, _admin_form(room, title="Admined", model="sim-small"))
    assert saved.status_code == 302
    room = await db(Room.objects.get)(name="admined")
    assert (room.title, room.model) == ("Admined", "sim-small")
    [event] = await watcher.recv_until(lambda f: f["type"] == "room.updated")
    assert (event["room"]["title"], event["room"]["model"]) == ("Admined", "sim-small")
    await watcher.close()
    # The admin is staff-only, as Django's is.
    assert (await owner.http.get(url)).status_code == 302


async def test_an_sse_reader_gets_room_info_and_room_updated_like_a_socket() -> None:
    owner = await person("owner")
    await db(rooms.create_room)("streamed", owner.identity, title="Streamed")
    response = await owner.http.get("/api/rooms/streamed/events")
    chunks = aiter(response.streaming_content)  # type: ignore[arg-type]
    welcome = b""
    while not welcome.startswith(b"event: welcome"):
        welcome = await anext(chunks)
    frame = json.loads(welcome.decode().split("data: ", 1)[1])
    assert frame["room_info"]["title"] == "Streamed"
    assert (await _patch(owner.http, "streamed", {"title": "Streamed again"})).status_code == 200
    event = b""
    while b"room.updated" not in event:
        event = await anext(chunks)
    lines = event.decode().splitlines()
    assert lines[0] == f"id: {frame['seq'] + 1}" and lines[1] == "event: room.updated"
    assert json.loads(lines[2].removeprefix("data: "))["room"]["title"] == "Streamed again"
    await chunks.aclose()  # type: ignore[attr-defined]


async def test_the_settings_page_turns_the_shared_knowledge_off_and_on() -> None:
    owner = await person("owner")
    await database_sync_to_async(rooms.create_room)("team", owner.identity)
    page = await owner.http.get("/rooms/team/settings/")
    assert b'name="use_shared_knowledge" id="id_use_shared_knowledge" checked' in page.content
    # An unchecked box is not sent: off.
    response = await owner.http.post("/rooms/team/settings/", {**FORM, "visibility": "public"})
    assert response.status_code == 302, response.content
    room = await database_sync_to_async(Room.objects.get)(name="team")
    assert room.use_shared_knowledge is False
    on = {**FORM, "visibility": "public", "use_shared_knowledge": "on"}
    assert (await owner.http.post("/rooms/team/settings/", on)).status_code == 302
    room = await database_sync_to_async(Room.objects.get)(name="team")
    assert room.use_shared_knowledge is True
