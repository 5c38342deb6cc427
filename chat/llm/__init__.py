"""The LLM layer: `get_provider()` returns the provider the settings choose.

CHAT_LLM_PROVIDER (a dotted path to a class taking no arguments) wins; else the OpenAI-compatible
provider when OPENAI_BASE_URL or OPENAI_API_KEY is set; else the offline answerer.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .base import LLMProvider

if TYPE_CHECKING:
    # mypy checks that every provider implements the protocol. Only mypy imports them here:
    # `_build_provider()` imports just the one the settings choose, so a process answering
    # offline never loads the openai SDK (about half a second and 20 MB).
    from .fake import FakeLLM
    from .offline import OfflineAnswerer
    from .openai_provider import OpenAIProvider

    _PROVIDERS: tuple[type[LLMProvider], ...] = (OpenAIProvider, OfflineAnswerer, FakeLLM)

__all__ = ["aclose_provider", "get_provider", "reset_provider", "warm_up_provider"]

_SETTINGS = frozenset(
    {
        "CHAT_LLM_PROVIDER",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "CHAT_MODEL",
        "CHAT_LLM_CONNECT_TIMEOUT",
        "CHAT_LLM_READ_TIMEOUT",
        "CHAT_LLM_MAX_RETRIES",
        "CHAT_LLM_MAX_TOKENS",
    }
)

_provider: LLMProvider | None = None
_retired: list[LLMProvider] = []
_lock = threading.Lock()


def get_provider() -> LLMProvider:
    """The process's provider, built on first use from the settings."""
    global _provider
    provider = _provider
    if provider is None:
        with _lock:
            if _provider is None:
                _provider = _build_provider()
            provider = _provider
    return provider


def reset_provider() -> None:
    """Forget the cached provider; the next `get_provider()` reads the settings again. (It is
    kept aside for `aclose_provider`: answers may still be using its HTTP client.)"""
    global _provider
    with _lock:
        if _provider is not None:
            _retired.append(_provider)
        _provider = None


async def aclose_provider() -> None:
    """Close the HTTP clients of the provider and of those reset before it (their pools belong
    to the event loop that used them) and forget them; the next `get_provider()` builds anew."""
    global _provider
    with _lock:
        providers = [*_retired, *([_provider] if _provider is not None else [])]
        _retired.clear()
        _provider = None
    for provider in providers:
        aclose = getattr(provider, "aclose", None)
        if aclose is not None:
            await aclose()


def warm_up_provider() -> None:
    """Build the process's provider and its HTTP client now, in the worker's warm-up (inside the
    running event loop the client's pool belongs to). What that loads (the OpenAI SDK and its
    HTTP stack, about 60,000 objects the collector tracks) is then loaded before the warm-up
    freezes the worker's long-lived objects (`chat.runtime.freeze_loaded_objects`), instead of
    at the first question, where every full collection afterwards would scan it again."""
    warm_up = getattr(get_provider(), "warm_up", None)
    if warm_up is not None:
        warm_up()


def _build_provider() -> LLMProvider:
    from django.conf import settings

    if settings.CHAT_LLM_PROVIDER:
        try:
            provider_class = import_string(settings.CHAT_LLM_PROVIDER)
        except ImportError as err:
            raise ImproperlyConfigured(
                f"CHAT_LLM_PROVIDER {settings.CHAT_LLM_PROVIDER!r} cannot be imported: {err}"
            ) from err
        provider: LLMProvider = provider_class()
        return provider
    if settings.OPENAI_BASE_URL or settings.OPENAI_API_KEY:
        from .openai_provider import OpenAIProvider

        return OpenAIProvider()
    from .offline import OfflineAnswerer

    return OfflineAnswerer()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # override_settings in tests: the next answer must see the new configuration.
    if setting in _SETTINGS:
        reset_provider()


setting_changed.connect(_on_setting_changed, dispatch_uid="chat.llm.reset_provider")
