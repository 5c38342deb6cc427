"""Which provider the settings choose, and the retry timing rules."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings

from chat.llm import get_provider, reset_provider, warm_up_provider
from chat.llm.fake import FakeLLM
from chat.llm.offline import OfflineAnswerer
from chat.llm.openai_provider import OpenAIProvider
from chat.llm.retry import backoff_delay, is_retryable_status, parse_retry_after, retry_delay
from tests.servers import ROOT, server_env


@pytest.fixture(autouse=True)
def no_llm_configured(settings: Settings) -> Iterator[None]:
    settings.CHAT_LLM_PROVIDER = ""
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    reset_provider()
    yield
    reset_provider()


def test_without_llm_settings_the_offline_answerer_is_used() -> None:
    assert isinstance(get_provider(), OfflineAnswerer)


def test_a_base_url_alone_selects_openai_with_a_placeholder_key(
    settings: Settings,
) -> None:
    settings.OPENAI_BASE_URL = "http://127.0.0.1:11434/v1"
    settings.CHAT_MODEL = "llama3.2"
    settings.CHAT_LLM_CONNECT_TIMEOUT = 3.0
    settings.CHAT_LLM_READ_TIMEOUT = 45.0
    settings.CHAT_LLM_MAX_RETRIES = 1
    settings.CHAT_LLM_MAX_TOKENS = 256

    provider = get_provider()

    assert isinstance(provider, OpenAIProvider)
    assert provider.base_url == "http://127.0.0.1:11434/v1"
    assert provider.api_key == "not-needed"
    assert provider.model == "llama3.2"
    assert (provider.connect_timeout, provider.read_timeout) == (3.0, 45.0)
    assert (provider.max_retries, provider.max_tokens) == (1, 256)


def test_an_api_key_alone_selects_openai(settings: Settings) -> None:
    settings.OPENAI_API_KEY = "sk-test"

    provider = get_provider()

    assert isinstance(provider, OpenAIProvider)
    assert provider.api_key == "sk-test"
    assert provider.base_url is None


def test_a_dotted_path_wins(settings: Settings) -> None:
    settings.OPENAI_API_KEY = "sk-test"
    settings.CHAT_LLM_PROVIDER = "chat.llm.fake.FakeLLM"

    assert isinstance(get_provider(), FakeLLM)


def test_a_bad_dotted_path_is_a_configuration_error(settings: Settings) -> None:
    settings.CHAT_LLM_PROVIDER = "chat.llm.nowhere.Provider"

    with pytest.raises(ImproperlyConfigured, match=r"chat\.llm\.nowhere\.Provider"):
        get_provider()


def test_the_provider_is_cached_until_reset_or_a_setting_changes(
    settings: Settings,
) -> None:
    first = get_provider()
    assert get_provider() is first

    reset_provider()
    second = get_provider()
    assert second is not first

    settings.OPENAI_API_KEY = "sk-test"
    assert isinstance(get_provider(), OpenAIProvider)


def test_retry_after_in_seconds_milliseconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)

    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": date}, now=now.timestamp()) == pytest.approx(7.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_retry_delay_caps_retry_after_and_backs_off_otherwise() -> None:
    assert retry_delay(0, {"retry-after": "3600"}, cap=20.0) == 20.0
    assert 0.5 <= retry_delay(1, {}, base=0.5) <= 1.0
    assert all(0 < backoff_delay(n) <= 8.0 for n in range(10))


def test_only_429_and_5xx_are_retryable() -> None:
    assert is_retryable_status(429)
    assert is_retryable_status(500)
    assert is_retryable_status(503)
    assert not is_retryable_status(400)
    assert not is_retryable_status(401)
    assert not is_retryable_status(404)


async def test_the_warm_up_makes_the_openai_client_in_the_running_loop(
    settings: Settings,
) -> None:
    """So its imports are loaded before the worker's warm-up freezes what is loaded."""
    settings.OPENAI_BASE_URL = "http://127.0.0.1:11434/v1"
    warm_up_provider()
    provider = get_provider()
    assert isinstance(provider, OpenAIProvider)
    assert provider._client is not None
    assert provider._client_loop is asyncio.get_running_loop()
    await provider.aclose()


def test_the_warm_up_of_a_provider_without_a_client_does_nothing() -> None:
    warm_up_provider()
    assert isinstance(get_provider(), OfflineAnswerer)


def test_the_warm_up_loads_what_the_first_request_would_import(tmp_path: Path) -> None:
    """The HTTP stack's first request imported anyio's asyncio backend (a dozen modules): a
    50 ms stop of the event loop at each worker's first question, measured in a worker, and
    objects loaded after the warm-up's freeze. In a fresh process (this one has them already),
    the warm-up loads them."""
    script = (
        "import asyncio, os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "import django; django.setup()\n"
        "from chat.llm import warm_up_provider\n"
        "async def main():\n"
        "    warm_up_provider()\n"
        "asyncio.run(main())\n"
        "print('anyio._backends._asyncio' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=server_env(tmp_path, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "True", done.stderr[-2000:]
