"""The API's documentation is tested: the OpenAPI description is valid and lists exactly the
API's paths, and every error code is in docs/http-api.md and the OpenAPI error schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.urls import URLPattern

from chat.api.errors import STATUS_BY_CODE
from chat.api.urls import urlpatterns

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "http-api.md").read_text()
OPENAPI: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


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
    assert set(OPENAPI["paths"]) == api_paths()
    # The guide writes `/api/rooms/<room>/...`: compare with the placeholders' names blanked.
    guide = re.sub(r"<\w+>", "<>", GUIDE)
    for path in api_paths():
        assert re.sub(r"\{\w+\}", "<>", path) in guide, path


@pytest.mark.parametrize(("code", "status"), sorted(STATUS_BY_CODE.items()))
def test_every_error_code_and_its_status_is_documented(code: str, status: int) -> None:
    enum = OPENAPI["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert code in enum["code"]["enum"]
    if code != "unknown_type":  # Cannot happen over HTTP; the guide says so.
        assert f"| {status} | `{code}` |" in GUIDE
    else:
        assert f"`{code}`" in GUIDE


def test_the_keep_alive_setting_is_documented() -> None:
    assert "`CHAT_SSE_KEEPALIVE_SECONDS`" in GUIDE
