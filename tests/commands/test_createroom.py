"""`manage.py createroom`: a room made from the terminal, owned by a person, with clear errors."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from chat.models import Room

pytestmark = pytest.mark.django_db


def createroom(*args: str) -> str:
    out = StringIO()
    call_command("createroom", *args, stdout=out)
    return out.getvalue()


def test_a_room_is_made_public_or_private_with_its_owner_and_title() -> None:
    minji = User.objects.create_user("minji", password="pw-123456789")
    said = createroom("cafe", "--owner", "minji")
    assert "Created the public room 'cafe' (cafe), owned by minji: /rooms/cafe/" in said
    cafe = Room.objects.get(name="cafe")
    assert (cafe.owner, cafe.visibility, cafe.title) == (minji, "public", "cafe")
    createroom("team", "--owner", "minji", "--private", "--title", "  Our   team ")
    team = Room.objects.get(name="team")
    assert (team.owner, team.visibility, team.title) == (minji, "private", "Our team")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cafe", "--owner", "nobody"], "no user 'nobody'"),
        (["bad name", "--owner", "minji"], "A room name is 1 to 64 characters"),
        (["x" * 65, "--owner", "minji"], "A room name is 1 to 64 characters"),
        (["taken", "--owner", "minji"], "There is already a room called taken."),
        (["cafe", "--owner", "minji", "--title", "t" * 101], "longer than 100 characters"),
        (["cafe", "--owner", "gone"], "user 'gone' is not active"),
    ],
)
def test_clear_errors_and_nothing_made(args: list[str], message: str) -> None:
    User.objects.create_user("minji", password="pw-123456789")
    User.objects.create_user("gone", password="pw-123456789", is_active=False)
    Room.objects.create(name="taken")
    with pytest.raises(CommandError, match=message) as refused:
        createroom(*args)
    assert refused.value.returncode == 2
    assert list(Room.objects.values_list("name", flat=True)) == ["taken"]


def test_the_owner_is_required() -> None:
    with pytest.raises(CommandError, match="--owner"):
        createroom("cafe")
