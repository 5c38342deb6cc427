"""The assistant sees the conversation: what the LLM simulator received when someone asked,
through the real ASGI application and the real `openai` client. People's messages and
questions come with who said them, the assistant's answers as they were; a removed message
never goes in; the conversation is bounded in messages and in characters, oldest out first."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import storage
from chat.answers.prompt import CONVERSATION_RULE
from chat.identity import Identity
from chat.models import Message, Room
from tests.conftest import Client, ask_to_store, connect
from tests.rooms.people import person

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("knowledge_base")]


async def say(speaker: Client, text: str) -> dict[str, Any]:
    await speaker.send({"type": "say", "text": text})
    me = speaker.welcome["user"]
    frames = await speaker.recv_until(lambda f: f["type"] == "message" and f["user"] == me)
    return frames[-1]


async def ask(asker: Client, text: str) -> dict[str, Any]:
    """Ask; the end of this question's answer (not of another one the room is getting)."""
    await asker.send({"type": "ask", "text": text})
    me = asker.welcome["user"]
    question = await asker.recv_until(
        lambda f: f["type"] == "question" and f["user"] == me and f["text"] == text
    )
    start = await asker.recv_until(
        lambda f: f["type"] == "answer.start" and f["question_id"] == question[-1]["id"]
    )
    answer_id = start[-1]["id"]
    end = await asker.recv_until(
        lambda f: f["type"] == "answer.end" and f["answer_id"] == answer_id
    )
    return end[-1]


def prompt(llm: Any) -> list[dict[str, str]]:
    """The messages of the last request the simulator received."""
    messages: list[dict[str, str]] = llm.stats()[-1].messages
    return messages


async def test_what_did_minji_say_about_the_cake(llm: Any) -> None:
    minji, joon = await person("Minji"), await person("Joon")
    at_minji = await connect("party", headers=minji.ws_headers)
    at_joon = await connect("party", headers=joon.ws_headers)
    await say(at_minji, "I will bring a chocolate cake on Friday.")
    await say(at_joon, "Great, I'll bring candles.")
    first = await ask(at_joon, "What did Minji say about the cake?")
    # One answer, streamed; the request that is not streamed is the follow-up rewrite.
    [request] = [record for record in llm.stats() if record.stream]
    messages = request.messages
    assert CONVERSATION_RULE in messages[0]["content"]
    conversation = [(m["role"], m["content"]) for m in messages[1:3]]
    assert conversation == [
        ("user", "Minji: I will bring a chocolate cake on Friday."),
        ("user", "Joon: Great, I'll bring candles."),
    ]
    assert messages[3]["content"].startswith("<documents>")
    assert messages[-1] == {"role": "user", "content": "Joon: What did Minji say about the cake?"}
    # The next question sees the answer too, as the assistant's own.
    await ask(at_minji, "And what will Joon bring?")
    seen = prompt(llm)
    assert first["status"] == "complete" and first["text"]
    assert [(m["role"], m["content"]) for m in seen[1:5]] == [
        *conversation,
        ("user", "Joon: What did Minji say about the cake?"),
        ("assistant", first["text"]),
    ]
    assert seen[-1]["content"] == "Minji: And what will Joon bring?"
    await at_minji.close()
    await at_joon.close()


@database_sync_to_async
def _remove_by_moderator(message_id: str) -> None:
    """What moderation does to a message (the flag; the text may go too)."""
    Message.objects.filter(id=message_id).update(redacted=True)


async def test_removed_messages_never_go_in_and_the_oldest_go_first(
    llm: Any, settings: Any
) -> None:
    alice = await connect("bounded")
    name = alice.welcome["user"]["name"]
    await say(alice, "old news " * 5)
    secret = await say(alice, "the door code is 1234")
    await _remove_by_moderator(secret["id"])
    await say(alice, "short one")
    # Room for the newest message and its name, not for the older one as well.
    settings.CHAT_CONTEXT_CHARS = len(f"{name}: short one") + 10
    await ask(alice, "What was said?")
    contents = "\n".join(m["content"] for m in prompt(llm))
    assert f"{name}: short one" in contents
    assert "1234" not in contents
    assert "old news" not in contents
    # The follow-up rewrite, before retrieval, sees the same conversation and nothing removed.
    rewrites = [record for record in llm.stats() if not record.stream]
    assert len(rewrites) == 1
    rewrite = "\n".join(m["content"] for m in rewrites[0].messages)
    assert f"{name}: short one" in rewrite and "What was said?" in rewrite
    assert "1234" not in rewrite and "old news" not in rewrite
    # With room for everything, the older message comes back; the removed one never does.
    settings.CHAT_CONTEXT_CHARS = 100_000
    await ask(alice, "And now?")
    contents = "\n".join(m["content"] for m in prompt(llm))
    assert f"{name}: old news" in contents and "1234" not in contents
    rewrite = "\n".join(m["content"] for m in [r for r in llm.stats() if not r.stream][-1].messages)
    assert f"{name}: old news" in rewrite and "1234" not in rewrite
    await alice.close()


async def test_of_several_versions_only_the_latest_complete_one_goes_in(llm: Any) -> None:
    alice = await connect("versions-context")
    first = await ask(alice, "Which cakes are there?")
    # A second version: it goes in, the first does not (one answer per question).
    await alice.send({"type": "regenerate", "answer_id": first["answer_id"]})
    frames = await alice.recv_until(lambda f: f["type"] == "answer.start")
    assert frames[-1]["version"] == 2
    second = await alice.recv_until(lambda f: f["type"] == "answer.end")
    assert second[-1]["status"] == "complete"
    await ask(alice, "And the prices?")
    answers = [m for m in prompt(llm) if m["role"] == "assistant"]
    assert [m["content"] for m in answers] == [second[-1]["text"]]
    await alice.close()


def _ask_stored(room: str, message_id: str, text: str) -> tuple[bool, list[str]]:
    """Store a question as an ask does: whether it read the room's conversation (a query of
    the messages made before it), and the conversation it got."""
    asker = Identity(id="g:ann", name="Ann", is_guest=True)
    with CaptureQueriesContext(connection) as queries:
        [written] = storage.create_questions_in_context(
            [ask_to_store(room, message_id, asker, text)]
        )
    assert not isinstance(written, Exception)
    stored, before = written
    assert stored.created
    read = any('"chat_message"."created" <' in query["sql"] for query in queries)
    return read, [message.text for message in before]


def test_the_first_question_of_a_room_reads_no_conversation() -> None:
    """A room's row is made with the first thing said in it: nothing came before that, so
    its conversation is not read (half of a question's database time in a burst of questions
    to new rooms, docs/benchmarks.md). The second question reads it as before, and so does
    the first of a room whose row was made without anything said in it (an owner's)."""
    assert _ask_stored("fresh", "q1", "Is the café open?") == (False, [])
    assert _ask_stored("fresh", "q2", "And on Sunday?") == (True, ["Is the café open?"])
    Room.objects.create(name="owned")
    assert _ask_stored("owned", "q3", "Hello?") == (True, [])
