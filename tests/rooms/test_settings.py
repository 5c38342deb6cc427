"""A room's settings (the rooms issue): checked by one form, applied to the next answer without
a restart (read with the question, nothing cached), and what the LLM simulator received says so.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import rooms
from chat.models import Room
from chat.protocol import ProtocolError
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
    before, after = llm.stats()[-2:]
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
    saved = await db(update_settings)(
        "checked",
        owner.identity,
        {"model": "", "temperature": "", "collection": "team.docs_2", "assistant_name": "비서"},
    )
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
    assert (await db(update_settings)("mine", staff.identity, {"title": "Staff's"})).title == (
        "Staff's"
    )
    # A room nobody made yet: staff may set it up (it gets its row); nobody else.
    with pytest.raises(ProtocolError):
        await db(update_settings)("fresh", owner.identity, {"title": "Fresh"})
    assert (await db(update_settings)("fresh", staff.identity, {"title": "Fresh"})).title == (
        "Fresh"
    )
