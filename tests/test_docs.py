"""Documentation is tested: every protocol type, error code and close code is in
docs/protocol.md; every setting read from the environment is in docs/configuration.md and
.env.example; the OpenAPI description is valid and lists exactly the API's paths, and every API
error code is in docs/http-api.md and the OpenAPI error schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.urls import URLPattern

from chat import protocol
from chat.api.errors import STATUS_BY_CODE
from chat.api.urls import urlpatterns
from chat.web.operations import PATHS as OPERATIONS_PATHS

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DOC = (ROOT / "docs" / "protocol.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
API_GUIDE = (ROOT / "docs" / "http-api.md").read_text()
OPENAPI: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


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
    # Every CLOSE_* constant of the protocol module: a new one cannot go undocumented.
    sorted(value for name, value in vars(protocol).items() if name.startswith("CLOSE_")),
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


# --- the HTTP API: docs/http-api.md and docs/openapi.yaml ---------------------------------


def test_the_openapi_description_is_valid() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(OPENAPI)


def api_paths() -> set[str]:
    paths = set()
    for pattern in urlpatterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern)
        if pattern.name is None:  # The catch-all JSON 404.
            continue
        paths.add("/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return paths


def test_openapi_and_the_guide_list_exactly_the_api_paths() -> None:
    assert set(OPENAPI["paths"]) == api_paths() | set(OPERATIONS_PATHS)
    for path in OPERATIONS_PATHS:  # answered before Django (chat.web.operations)
        assert f"`GET {path}`" in API_GUIDE, path
    # The guide writes `/api/rooms/<room>/...`: compare with the placeholders' names blanked.
    guide = re.sub(r"<\w+>", "<>", API_GUIDE)
    for path in api_paths():
        assert re.sub(r"\{\w+\}", "<>", path) in guide, path


@pytest.mark.parametrize(("code", "status"), sorted(STATUS_BY_CODE.items()))
def test_every_error_code_and_its_status_is_documented(code: str, status: int) -> None:
    enum = OPENAPI["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert code in enum["code"]["enum"]
    if code != "unknown_type":  # Cannot happen over HTTP; the guide says so.
        assert f"| {status} | `{code}` |" in API_GUIDE
    else:
        assert f"`{code}`" in API_GUIDE


def test_the_keep_alive_setting_is_documented() -> None:
    assert "`CHAT_SSE_KEEPALIVE_SECONDS`" in API_GUIDE
