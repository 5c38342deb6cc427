"""Export of a room as JSON and Markdown, and the JSON read back (`manage.py importroom`):
every message with its status, sources and feedback; what a moderator removed stays
removed; exporting what was imported gives the same file."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.test import AsyncClient

from chat.history.export import load_room
from chat.models import Message, Room
from chat.protocol import ProtocolError
from tests.conftest import Client
from tests.history.guests import browser_guest

pytestmark = pytest.mark.django_db(transaction=True)


async def _room_with_everything(name: str) -> tuple[Client, dict[str, Any]]:
    alice, _ = await browser_guest(name)
    await alice.send({"type": "say", "text": "안녕하세요, **everyone**"})
    await alice.recv_until(lambda f: f["type"] == "message")
    answered = await alice.answer("라떼 얼마예요?")
    answer_id = answered[-1]["answer_id"]
    await alice.send({"type": "feedback", "answer_id": answer_id, "value": "down"})
    await alice.recv_until(lambda f: f["type"] == "answer.feedback")
    await alice.send({"type": "say", "text": "비밀번호는 swordfish-4711"})
    secret = (await alice.recv_until(lambda f: f["type"] == "message"))[-1]
    await Message.objects.filter(id=secret["id"]).aupdate(text="", redacted=True)
    return alice, {"answer_id": answer_id, "secret": secret["id"], "question": answered[0]["id"]}


async def test_json_export_holds_every_message_and_reads_back_losslessly(tmp_path: Path) -> None:
    alice, ids = await _room_with_everything("export")
    response = await AsyncClient().get("/api/rooms/export/export", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="export.json"'
    data = json.loads(response.content)
    entries = {entry["id"]: entry for entry in data["messages"]}
    assert [entry["role"] for entry in data["messages"]] == [
        "message",
        "user",
        "assistant",
        "message",
    ]
    answer = entries[ids["answer_id"]]
    assert answer["status"] == "complete" and answer["question_id"] == ids["question"]
    assert answer["feedback"] == {"up": 0, "down": 1}
    assert isinstance(answer["sources"], list) and answer["text"]
    assert entries[ids["secret"]]["redacted"] is True and entries[ids["secret"]]["text"] == ""
    assert "swordfish" not in response.content.decode()
    await alice.close()

    # Read back into a database that no longer holds the room: the same export again.
    await Room.objects.filter(name="export").adelete()
    path = tmp_path / "export.json"
    path.write_bytes(response.content)
    out = io.StringIO()
    await sync_to_async(call_command)("importroom", str(path), stdout=out)
    assert "Imported 4 messages" in out.getvalue()
    again = await AsyncClient().get("/api/rooms/export/export", {"format": "json"})
    assert json.loads(again.content) == data
    # Imported once; a second time would duplicate it: refused, nothing changes.
    with pytest.raises(CommandError, match="already"):
        await sync_to_async(call_command)("importroom", str(path), "--room", "export-2")
    assert not await Room.objects.filter(name="export-2").aexists()


async def test_versions_and_edited_questions_read_back(tmp_path: Path) -> None:
    alice, _ = await browser_guest("export-versions")
    answered = await alice.answer("라떼 얼마예요?")
    question_id, answer_id = answered[0]["id"], answered[-1]["answer_id"]
    await alice.send({"type": "regenerate", "answer_id": answer_id})
    await alice.recv_until(lambda f: f["type"] == "answer.end")
    await alice.send({"type": "edit", "question_id": question_id, "text": "아이스 라떼 얼마예요?"})
    await alice.recv_until(lambda f: f["type"] == "answer.end")
    await alice.close()
    response = await AsyncClient().get("/api/rooms/export-versions/export", {"format": "json"})
    data = json.loads(response.content)
    versions = [
        (e["version"], e["continues_id"])
        for e in data["messages"]
        if e["role"] == "assistant" and e["question_id"] == question_id
    ]
    assert versions == [(1, None), (2, None)]
    [edited] = [e for e in data["messages"] if e.get("edits_id")]
    assert (edited["edits_id"], edited["text"]) == (question_id, "아이스 라떼 얼마예요?")

    await Room.objects.filter(name="export-versions").adelete()
    path = tmp_path / "export.json"
    path.write_bytes(response.content)
    await sync_to_async(call_command)("importroom", str(path), stdout=io.StringIO())
    again = await AsyncClient().get("/api/rooms/export-versions/export", {"format": "json"})
    assert json.loads(again.content) == data


async def test_markdown_export_reads_as_the_conversation() -> None:
    alice, _ = await _room_with_everything("export-md")
    response = await AsyncClient().get("/api/rooms/export-md/export", {"format": "md"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.startswith("# export-md\n")
    assert "안녕하세요, **everyone**" in text and "라떼 얼마예요?" in text
    assert "(asked the assistant)" in text and "👍 0 · 👎 1" in text
    assert "*Removed by a moderator.*" in text and "swordfish" not in text
    korean = await AsyncClient().get("/api/rooms/export-md/export", {"format": "md", "lang": "ko"})
    text = korean.content.decode()
    assert "(비서에게 질문)" in text and "### 어시스턴트 · " in text
    assert "*운영자가 삭제한 메시지입니다.*" in text and "swordfish" not in text
    await alice.close()


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"format": "something else", "version": 1, "room": {"name": "x"}, "messages": []},
        {"format": "roomchat.room-export", "version": 2, "room": {"name": "x"}, "messages": []},
        {"format": "roomchat.room-export", "version": 1, "room": {"name": "../x"}, "messages": []},
        {"format": "roomchat.room-export", "version": 1, "room": "x", "messages": []},
        {"format": "roomchat.room-export", "version": 1, "room": {"name": "x"}, "messages": {}},
        {
            "format": "roomchat.room-export",
            "version": 1,
            "room": {"name": "x"},
            "messages": [{"id": "m_1", "role": "wizard", "created": "2026-01-01T00:00:00Z"}],
        },
        {
            "format": "roomchat.room-export",
            "version": 1,
            "room": {"name": "x"},
            "messages": [{"id": "m_1", "role": "message", "created": "yesterday"}],
        },
    ],
)
async def test_what_is_not_an_export_is_refused_and_nothing_is_stored(data: Any) -> None:
    with pytest.raises(ProtocolError) as refused:
        await sync_to_async(load_room)(data)
    assert refused.value.code == "invalid"
    assert await Room.objects.acount() == 0 and await Message.objects.acount() == 0


async def test_a_bad_format_is_invalid() -> None:
    response = await AsyncClient().get("/api/rooms/export-bad/export", {"format": "pdf"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
