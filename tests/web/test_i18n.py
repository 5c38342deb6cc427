"""Every string the pages name has its English and its Korean (frontend/static/chat/js/i18n.js):
the templates' `data-i18n` keys, and the keys the views hand them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chat.web import invites, room_settings, views

ROOT = Path(__file__).resolve().parents[2]
I18N = (ROOT / "frontend" / "static" / "chat" / "js" / "i18n.js").read_text()
TEMPLATES = sorted((ROOT / "frontend" / "templates").rglob("*.html"))


def table(language: str) -> set[str]:
    start = I18N.index(f"  {language}: {{")
    end = I18N.index("\n  },", start)
    return set(re.findall(r'^\s+"?([\w.]+)"?:', I18N[start:end], re.M)) - {language}


ENGLISH, KOREAN = table("en"), table("ko")


def template_keys() -> set[str]:
    keys: set[str] = set()
    for path in TEMPLATES:
        text = path.read_text()
        keys |= {k for k in re.findall(r'data-i18n="([\w.]+)"', text)}
        for pairs in re.findall(r'data-i18n-attr="([^"]+)"', text):
            keys |= {pair.split(":")[1].strip() for pair in pairs.split(",")}
    return keys


def view_keys() -> set[str]:
    keys = {key for key, _ in views.CREATE_ERRORS.values()}
    keys |= {key for _, key in invites.UNUSABLE.values()} | set(invites.UNUSABLE_ENGLISH)
    keys |= {f"settings.error.{code}" for code in room_settings.TRANSLATED_ERRORS}
    keys |= {f"role.{role}" for role in ("owner", "moderator", "member")}
    for path in (ROOT / "chat" / "web").glob("*.py"):
        keys |= set(re.findall(r'key="([\w.]+)"', path.read_text()))
        keys |= set(re.findall(r'title_key="([\w.]+)"', path.read_text()))
    return keys


def test_the_tables_are_found_and_the_same_keys_in_both_languages() -> None:
    assert {"home.title", "invite.join", "settings.title"} <= ENGLISH
    assert ENGLISH == KOREAN, ENGLISH ^ KOREAN


@pytest.mark.parametrize("key", sorted(template_keys() | view_keys()))
def test_every_key_the_pages_use_is_in_english_and_korean(key: str) -> None:
    if key.endswith("."):  # built in the template from a value (role.{{ role }}): see view_keys
        return
    assert key in ENGLISH and key in KOREAN, key
