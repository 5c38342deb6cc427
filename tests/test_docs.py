"""Documentation is tested: every protocol type, error code and close code is in
docs/protocol.md, and every setting read from the environment is in docs/configuration.md and
.env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chat import protocol

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DOC = (ROOT / "docs" / "protocol.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()


def settings_variables() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r'env\.(?:str|int|bool|float|list|path|db)\(\s*"([A-Z0-9_]+)"', source))


@pytest.mark.parametrize(
    "name",
    [
        *protocol.COMMAND_TYPES,
        *protocol.ROOM_EVENT_TYPES,
        *protocol.DIRECT_FRAME_TYPES,
        *protocol.ERROR_CODES,
        *protocol.FINAL_STATUSES,
    ],
)
def test_every_protocol_name_is_documented(name: str) -> None:
    assert f"`{name}`" in PROTOCOL_DOC, f"{name} is not in docs/protocol.md"


@pytest.mark.parametrize(
    "code",
    [
        protocol.CLOSE_TOO_BIG,
        protocol.CLOSE_POLICY,
        protocol.CLOSE_INTERNAL,
        protocol.CLOSE_RESTART,
        protocol.CLOSE_BAD_ROOM,
        protocol.CLOSE_TOO_SLOW,
    ],
)
def test_every_close_code_is_documented(code: int) -> None:
    assert f"| {code} |" in PROTOCOL_DOC


def test_the_settings_are_found() -> None:
    assert {"DJANGO_SECRET_KEY", "REDIS_URL", "CHAT_MODEL"} <= settings_variables()


@pytest.mark.parametrize("name", sorted(settings_variables()))
def test_every_setting_is_documented_and_in_env_example(name: str) -> None:
    assert f"`{name}`" in CONFIG_DOC, f"{name} is not in docs/configuration.md"
    assert re.search(rf"^#?\s*{name}=", ENV_EXAMPLE, re.M), f"{name} is not in .env.example"


def test_the_issue_settings_are_all_there() -> None:
    required = {
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "DATABASE_URL",
        "CHROMA_PATH",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "CHAT_MODEL",
        "REDIS_URL",
        "CHROMA_URL",
    }
    assert required <= settings_variables()
