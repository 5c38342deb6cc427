"""Chroma as the knowledge base: the client, the collections and the `Retriever` over them.

Embedded (`PersistentClient` at CHROMA_PATH) for one process; a Chroma server (`HttpClient` at
CHROMA_URL) when several workers share the knowledge base, because an embedded directory opened
by several processes serves stale results. Queries are embedded by us (the registered function
from settings) and passed as `query_embeddings`, so Chroma never picks an embedding itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Documents, Embeddable, EmbeddingFunction
from chromadb.config import Settings
from chromadb.errors import NotFoundError
from django.conf import settings

from chat.batching import MicroBatcher
from chat.errors import RetrievalError
from chat.retrieval.ahead import QueriesAhead, Vector
from chat.retrieval.base import Source
from chat.retrieval.embeddings import get_embedding_function
from chat.retrieval.lexical import LexicalIndexes, reciprocal_rank_fusion

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 200
HTTP_TIMEOUT = 30.0
HTTP_CONNECT_TIMEOUT = 5.0

# Hybrid retrieval ranks this many candidates on each side before fusing them (at least k).
CANDIDATES = 12

_clients: dict[tuple[str, str], ClientAPI] = {}
_clients_lock = threading.Lock()
# The lexical indexes of this process, one per collection (see chat.retrieval.lexical).
lexical_indexes = LexicalIndexes()


def get_client() -> ClientAPI:
    """The Chroma client for the current settings, one per process (created on first use)."""
    key = (settings.CHROMA_URL, settings.CHROMA_PATH)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _connect(*key)
        return client


def reset_clients() -> None:
    """Forget the cached clients (tests switch CHROMA_PATH between cases)."""
    with _clients_lock:
        _clients.clear()
    lexical_indexes.clear()


def _connect(url: str, path: str) -> ClientAPI:
    try:
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise RetrievalError(f"CHROMA_URL must look like http://host:port, not {url!r}")
            https = parts.scheme == "https"
            _probe(url)
            client = chromadb.HttpClient(
                host=parts.hostname,
                port=parts.port or (443 if https else 8000),
                ssl=https,
                settings=Settings(anonymized_telemetry=False),
            )
            _bound_http_timeouts(client)
            return client
        # Telemetry off (here and above): no calls home.
        return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))
    except RetrievalError:
        raise
    except Exception as err:
        where = url or path
        raise RetrievalError(f"cannot open the knowledge base at {where}: {err}") from err


def _probe(url: str) -> None:
    """Chroma's HTTP client waits forever (httpx timeout=None), also in its constructor: check
    the server answers, with a timeout, before handing it over."""
    try:
        httpx.get(
            f"{url.rstrip('/')}/api/v2/heartbeat",
            timeout=httpx.Timeout(HTTP_TIMEOUT, connect=HTTP_CONNECT_TIMEOUT),
        ).raise_for_status()
    except httpx.HTTPError as err:
        raise RetrievalError(f"cannot open the knowledge base at {url}: {err}") from err


def _bound_http_timeouts(client: ClientAPI) -> None:
    """Without timeouts, a hung server would pin a worker thread per question until the
    process's thread pool runs dry. Chroma has no setting for them: set them on its session."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(HTTP_TIMEOUT, connect=HTTP_CONNECT_TIMEOUT)
    else:
        logger.warning("cannot set timeouts on Chroma's HTTP client (%r)", type(session))


def open_collection(
    name: str,
    *,
    create: bool = False,
    client: ClientAPI | None = None,
    embedding_function: EmbeddingFunction[Documents] | None = None,
) -> Collection | None:
    """The collection `name` with our embedding function, or None when it does not exist and
    `create` is false. New collections use cosine distance. Runs in a worker thread."""
    client = client or get_client()
    # Chroma annotates the parameter for documents-or-images functions; ours embed documents.
    ef = cast("EmbeddingFunction[Embeddable]", embedding_function or get_embedding_function())
    try:
        if create:
            return client.get_or_create_collection(
                name, embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
            )
        return client.get_collection(name, embedding_function=ef)
    except NotFoundError:
        return None
    except ValueError as err:
        if "conflict" in str(err):
            raise RetrievalError(
                f"collection {name!r} was built with another embedding function than "
                f"CHAT_EMBEDDING={settings.CHAT_EMBEDDING!r}; re-ingest it with "
                f"`manage.py ingest --reset` or change the setting back ({err})"
            ) from err
        raise RetrievalError(f"cannot open collection {name!r}: {err}") from err
    except Exception as err:
        raise RetrievalError(f"cannot open collection {name!r}: {err}") from err


def similarity(distance: float, space: str) -> float:
    """Turns a Chroma distance into a score in [0, 1], higher is better (cosine similarity
    for normalised vectors, clipped at 0)."""
    # Squared L2 between unit vectors is 2 - 2 cos; cosine (and ip, for unit vectors) 1 - cos.
    cosine = 1.0 - distance / 2.0 if space == "l2" else 1.0 - distance
    return max(0.0, min(1.0, cosine))


_SPACES = re.compile(r"\s+")
_HEADING_MARKS = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE)


def make_snippet(text: str, limit: int = SNIPPET_CHARS, *, skip: int = 0) -> str:
    """A short excerpt for people: Markdown heading marks dropped, whitespace collapsed, cut at
    a word boundary near `limit`. `skip` leaves out a leading overlap with the previous chunk
    (when enough text remains), so the excerpt starts with what this chunk adds."""
    if skip > 0 and len(text) - skip >= limit // 2:
        text = text[skip:]
    flat = _SPACES.sub(" ", _HEADING_MARKS.sub("", text)).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    # Text without spaces (long CJK runs) is cut at the limit rather than shrunk to nothing.
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


@dataclass(frozen=True, slots=True)
class _Search:
    """One `retrieve` call waiting for its batch."""

    query: str
    collection: str
    k: int
    # Its query's embedding, when it was made ahead (`prefetch`): not made again.
    vector: Vector | None = None


# A search's passages, or the error that stopped it (its batch's other searches go on).
_Found = list[Source] | RetrievalError


class ChromaRetriever:
    """Searches a Chroma collection. The embedding and the Chroma calls block, so they run in a
    worker thread; the event loop keeps serving sockets meanwhile.

    Concurrent searches are batched (`chat.batching`): a burst of questions opens each
    collection once, embeds every query in one call of the model and asks Chroma once per
    collection, in one trip to a thread, instead of one trip and one model call per question.

    Hybrid (CHAT_RETRIEVAL_HYBRID, on by default): the vector ranking and a BM25 ranking of the
    same chunks (`chat.retrieval.lexical`) are fused by reciprocal rank, so a passage naming
    the exact code, name or number of the question is found even where the embedding blurs it.
    """

    def __init__(
        self,
        *,
        client: ClientAPI | None = None,
        embedding_function: EmbeddingFunction[Documents] | None = None,
        hybrid: bool | None = None,
    ) -> None:
        self._client = client
        self._embedding_function = embedding_function
        # None: CHAT_RETRIEVAL_HYBRID, read on each query.
        self._hybrid = hybrid
        self._batcher: MicroBatcher[_Search, _Found] = MicroBatcher(
            self._in_thread, max_batch=MAX_BATCH
        )
        self._ahead = QueriesAhead(self._embed_in_thread, max_batch=MAX_BATCH)
        # Whether CHAT_COLLECTION has chunks, as last looked (monotonic): see `_embed_ahead`.
        self._has_knowledge = False
        self._checked_at = float("-inf")

    @property
    def hybrid(self) -> bool:
        return bool(settings.CHAT_RETRIEVAL_HYBRID if self._hybrid is None else self._hybrid)

    async def retrieve(self, query: str, *, collection: str, k: int) -> list[Source]:
        """The `k` passages that best match `query`; [] for a missing or empty collection."""
        if not query.strip() or k <= 0:
            return []
        vector = await self._ahead.vector(query)
        found = await self._batcher.submit(_Search(query, collection, k, vector))
        if isinstance(found, RetrievalError):
            raise found
        return found

    def prefetch(self, query: str) -> None:
        """Start embedding `query` now, for its `retrieve` soon after (`chat.retrieval.ahead`):
        an ask's question while the question is being stored."""
        self._ahead.prefetch(query)

    async def _in_thread(self, searches: list[_Search]) -> list[_Found]:
        return await asyncio.to_thread(self._search_many, searches)

    async def _embed_in_thread(self, texts: list[str]) -> list[Vector | None]:
        return await asyncio.to_thread(self._embed_ahead, texts)

    def _embed_ahead(self, texts: list[str]) -> list[Vector | None]:
        """The texts' embeddings; none made (None each) while the server's collection has
        nothing to search: a server without a knowledge base embeds nothing ahead."""
        ef = self._embedding_function or get_embedding_function()
        now = time.monotonic()
        if now >= self._checked_at + KNOWLEDGE_CHECK_SECONDS:
            opened = self._open(settings.CHAT_COLLECTION, ef)
            self._has_knowledge = isinstance(opened, tuple)
            self._checked_at = now
        if not self._has_knowledge:
            return [None] * len(texts)
        return list(ef.embed_query(texts))

    def _search_many(self, searches: list[_Search]) -> list[_Found]:
        """Every search of a batch: each collection opened once, the queries of the non-empty
        ones embedded in one call, then Chroma asked once per collection and size."""
        ef = self._embedding_function or get_embedding_function()
        hybrid = self.hybrid
        opened: dict[str, tuple[Collection, int] | _Found] = {}
        for name in dict.fromkeys(search.collection for search in searches):
            opened[name] = self._open(name, ef)
        ready = [s for s in searches if isinstance(opened[s.collection], tuple)]
        vectors: dict[str, Any] = {s.query: s.vector for s in ready if s.vector is not None}
        texts = list(dict.fromkeys(s.query for s in ready if s.query not in vectors))
        if texts:
            try:
                vectors.update(zip(texts, ef.embed_query(texts), strict=True))
            except Exception as err:
                for name in {s.collection for s in ready}:
                    opened[name] = _failed(name, err)
        results: dict[int, _Found] = {}
        groups: dict[tuple[str, int], list[int]] = {}
        for index, search in enumerate(searches):
            state = opened[search.collection]
            if isinstance(state, tuple):
                count = state[1]
                pool = min(count, max(search.k, CANDIDATES) if hybrid else search.k)
                groups.setdefault((search.collection, pool), []).append(index)
            else:
                results[index] = state
        for (name, pool), members in groups.items():
            found, count = cast("tuple[Collection, int]", opened[name])
            try:
                ranked = _query(found, [vectors[searches[i].query] for i in members], pool)
                for index, hits in zip(members, ranked, strict=True):
                    search = searches[index]
                    results[index] = _rank(
                        found, count, search, hits, vectors[search.query], hybrid
                    )
            except Exception as err:
                for index in members:
                    results[index] = _failed(name, err)
        return [results[index] for index in range(len(searches))]

    def _open(self, name: str, ef: EmbeddingFunction[Documents]) -> tuple[Collection, int] | _Found:
        """The collection and its size; [] when there is nothing to search."""
        try:
            found = open_collection(name, client=self._client, embedding_function=ef)
            if found is None:
                logger.info("collection %r does not exist: nothing to retrieve", name)
                return []
            count = found.count()
        except Exception as err:
            return _failed(name, err)
        return (found, count) if count else []


# How long `_embed_ahead` trusts its look at whether the server's collection has anything.
KNOWLEDGE_CHECK_SECONDS = 10.0

# The most searches one trip to the thread takes; more wait for the next. Every search of a
# batch gets its passages when the whole batch is done, so a batch of B adds about B/2 model
# calls to the median wait, against what it saves: one trip, one open, one Chroma query for
# all, and the model's gain on a batch (embedding 10 together took 0.8 of 10 alone here with
# the engine's two threads, about 1.0 with one). Small batches keep most of the saving.
MAX_BATCH = 8


def _failed(name: str, err: Exception) -> RetrievalError:
    if isinstance(err, RetrievalError):
        return err
    error = RetrievalError(f"searching collection {name!r} failed: {err}")
    error.__cause__ = err
    return error


def _query(collection: Collection, vectors: list[Any], pool: int) -> list[list[_Hit]]:
    """Chroma's nearest `pool` chunks for each vector, in one call."""
    result = collection.query(
        query_embeddings=vectors,
        n_results=pool,
        include=["documents", "metadatas", "distances"],
    )
    space = _space(collection)
    return [_hits(result, space, row) for row in range(len(vectors))]


def _rank(
    found: Collection, count: int, search: _Search, hits: list[_Hit], vector: Any, hybrid: bool
) -> list[Source]:
    """A search's passages from its vector hits, fused with the lexical ranking if hybrid."""
    if not hybrid:
        return _sources(hits[: search.k])
    pool = min(count, max(search.k, CANDIDATES))
    lexical = lexical_indexes.get(found, count=count).search(search.query, pool)
    order = reciprocal_rank_fusion([[hit.id for hit in hits], [hit.id for hit in lexical]])
    chosen = order[: search.k]
    by_id = {hit.id: hit for hit in hits}
    missing = [chunk for chunk in chosen if chunk not in by_id]
    if missing:
        by_id.update(_fetch(found, missing, np.asarray(vector, dtype=np.float64)))
    return _sources([by_id[chunk] for chunk in chosen if chunk in by_id])


@dataclass(frozen=True, slots=True)
class _Hit:
    """A chunk as Chroma returned it, with its similarity to the query."""

    id: str
    text: str
    meta: dict[str, Any]
    score: float


def _hits(result: Any, space: str, row: int = 0) -> list[_Hit]:
    # Chroma answers per query embedding, in the order they were sent.
    ids: list[str] = result["ids"][row]
    documents: list[str | None] = (result.get("documents") or [[]] * (row + 1))[row]
    metadatas: list[dict[str, Any] | None] = (result.get("metadatas") or [[]] * (row + 1))[row]
    distances: list[float] = (result.get("distances") or [[]] * (row + 1))[row]
    return [
        _Hit(
            id=ids[i],
            text=documents[i] or "",
            meta=dict(metadatas[i] or {}),
            score=similarity(float(distances[i]), space),
        )
        for i in range(len(ids))
    ]


def _fetch(collection: Collection, ids: list[str], query: np.ndarray) -> dict[str, _Hit]:
    """Chunks found only by their words: their text, metadata and cosine similarity to the
    query (computed here, as Chroma did not rank them)."""
    got = collection.get(ids=ids, include=["documents", "metadatas", "embeddings"])
    count = len(got["ids"])
    documents: list[Any] = list(got.get("documents") or []) or [None] * count
    metadatas: list[Any] = list(got.get("metadatas") or []) or [None] * count
    embeddings = got.get("embeddings")
    found = {}
    for i, chunk in enumerate(got["ids"]):
        score = 0.0
        if embeddings is not None and len(embeddings) > i:
            vector = np.asarray(embeddings[i], dtype=np.float64)
            norms = float(np.linalg.norm(vector) * np.linalg.norm(query))
            if norms > 0:
                score = max(0.0, min(1.0, float(vector @ query) / norms))
        found[chunk] = _Hit(
            id=chunk, text=documents[i] or "", meta=dict(metadatas[i] or {}), score=score
        )
    return found


def _space(collection: Collection) -> str:
    hnsw = (collection.configuration_json or {}).get("hnsw") or {}
    return str(hnsw.get("space") or "l2")


def _int(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def document_name(stored: str) -> str:
    """The name of a document stored as `stored` (a path, relative or absolute, on any OS, or
    a URL): its last part, without the folders that would show the server's layout."""
    return stored.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _sources(hits: list[_Hit]) -> list[Source]:
    sources = []
    for index, hit in enumerate(hits):
        meta = hit.meta
        # What the server stored the document as (a path on its disk) stays on the server:
        # people, the prompt and the logs see the document's name and title only.
        name = document_name(str(meta.get("source") or ""))
        number = meta.get("chunk")
        sources.append(
            Source(
                id=f"{name}#{number}" if isinstance(number, int) else name or f"passage-{index}",
                title=str(meta.get("title") or name or "untitled"),
                source=name,
                snippet=make_snippet(hit.text, skip=_int(meta.get("overlap"))),
                score=hit.score,
                text=hit.text,
            )
        )
    return sources
