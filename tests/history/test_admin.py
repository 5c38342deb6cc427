"""The admin's list of answers by 👎: most first, with the documents their sources came from."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chat.models import FeedbackCount, Message, Room


def _answer(room: Room, n: int, sources: list[dict[str, str]], up: int, down: int) -> Message:
    question = Message.objects.create(
        id=f"q_{n}", room=room, role="user", text=f"question {n}", created=timezone.now()
    )
    answer = Message.objects.create(
        id=f"a_{n}",
        room=room,
        role="assistant",
        text=f"answer {n}",
        question=question,
        sources=sources,
        created=timezone.now(),
    )
    FeedbackCount.objects.create(answer=answer, up=up, down=down, rev=up + down)
    return answer


@pytest.mark.django_db
def test_staff_see_the_answers_with_the_most_thumbs_down_first_with_their_documents() -> None:
    room = Room.objects.create(name="cafe")
    _answer(room, 1, [{"source": "menu-drinks.md", "title": "Drinks"}], up=3, down=1)
    _answer(room, 2, [{"source": "hours.md"}, {"source": "hours.md"}, {"title": "Wifi"}], 0, 4)
    _answer(room, 3, [], up=0, down=0)
    staff = User.objects.create_superuser("root", password="pw-123456789")
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/chat/feedbackcount/").content.decode()
    assert page.index("a_2") < page.index("a_1") and "a_3" not in page
    assert "hours.md, Wifi" in page and "menu-drinks.md" in page
    assert "question 2" in page
    member = User.objects.create_user("someone", password="pw-123456789")
    client.force_login(member)
    assert client.get("/admin/chat/feedbackcount/").status_code == 302
