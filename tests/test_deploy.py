"""The production environment that docs/deploy.md documents makes `manage.py check --deploy`
clean: run on that very block of the page, so the page and the settings cannot drift apart."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs import settings_variables

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DOC = (ROOT / "docs" / "deploy.md").read_text()

pytestmark = pytest.mark.slow  # two Django processes


def documented_environment() -> dict[str, str]:
    """The `KEY=value` lines of the block after `<!-- production-environment -->`, with each
    `<placeholder>` replaced by a fresh random secret."""
    block = DEPLOY_DOC.split("<!-- production-environment -->", 1)[1]
    block = block.split("```bash\n", 1)[1].split("```", 1)[0]
    found = {}
    for line in block.splitlines():
        name, _, value = line.partition("=")
        if value.startswith("<"):
            value = secrets.token_urlsafe(50)
        found[name] = value
    return found


def check_deploy(extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CHAT_"))}
    env.update(
        {
            "DJANGO_READ_DOT_ENV": "0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            **extra,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_block_sets_only_real_settings() -> None:
    environment = documented_environment()
    assert {"DJANGO_SECRET_KEY", "DJANGO_BEHIND_TLS_PROXY", "DJANGO_HSTS_SECONDS"} <= set(
        environment
    )
    assert set(environment) <= settings_variables()


def test_check_deploy_is_clean_with_the_documented_environment(tmp_path: Path) -> None:
    result = check_deploy(documented_environment(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_without_it(tmp_path: Path) -> None:
    """The check above can fail: a laptop's settings are not production's."""
    result = check_deploy({"DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}, tmp_path)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, result.stderr
    assert not re.search(r"sk-|Traceback", result.stderr)
