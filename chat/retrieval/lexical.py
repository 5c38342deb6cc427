"""The lexical side of hybrid retrieval: BM25 (`bm25s`) over the same chunks Chroma holds.

Embeddings blur exact terms (a code, a product name, a number, a phone number); BM25 over the
words finds them. The index is derived from the collection's own documents, one per collection
and per process, and rebuilt when the collection's revision changes: every write through
`chat.retrieval.ingest` (ingest, replace, delete) stamps a new revision in the collection's
metadata, so a worker sees another process's writes at its next query. Chroma stays the one
source of truth; nothing else is stored.

Tokens work for Korean without a model: a run of Hangul becomes its character bigrams
("아이스로도" -> 아이, 이스, 스로, 로도), so a word matches whatever particle follows it; other
letters and digits become lowercased words, with thousands separators dropped from numbers
("4,500" -> 4500) and letters split from digits ("12길" -> 12, 길; "A12" stays whole as well).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np

logger = logging.getLogger(__name__)

# The collection metadata key whose value changes with every write of the collection's passages.
REVISION_KEY = "roomchat_revision"

_THOUSANDS = re.compile(r"(?<=\d)[,.](?=\d{3}(?!\d))")
_RUN = re.compile(r"[^\W_]+")
_HANGUL_OR_NOT = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]+|[^\uac00-\ud7a3\u3131-\u318e]+")
_LETTERS_DIGITS = re.compile(r"\d+|\D+")


def tokenize(text: str) -> list[str]:
    """The BM25 tokens of `text`: Hangul as character bigrams, other words lowercased."""
    text = _THOUSANDS.sub("", unicodedata.normalize("NFKC", text).lower())
    tokens: list[str] = []
    for run in _RUN.findall(text):
        for part in _HANGUL_OR_NOT.findall(run):
            if "\uac00" <= part[0] <= "\ud7a3" or "\u3131" <= part[0] <= "\u318e":
                if len(part) == 1:
                    tokens.append(part)
                else:
                    tokens.extend(part[i : i + 2] for i in range(len(part) - 1))
                continue
            pieces = _LETTERS_DIGITS.findall(part)
            tokens.extend(pieces)
            if len(pieces) > 1:
                tokens.append(part)  # a code such as "a12" also matches as a whole
    return tokens


@dataclass(frozen=True, slots=True)
class LexicalHit:
    """A chunk found by its words: its position in the index and its BM25 score (> 0)."""

    id: str
    score: float


class LexicalIndex:
    """BM25 over one snapshot of a collection's chunks (ids and texts, in the same order)."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self.ids = list(ids)
        self._bm25: bm25s.BM25 | None = None
        corpus = [tokenize(text) for text in texts]
        # bm25s refuses an empty vocabulary: a collection of chunks without words has no index.
        if any(corpus):
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int) -> list[LexicalHit]:
        """At most `k` chunks sharing words with `query`, best first."""
        tokens = tokenize(query)
        if self._bm25 is None or not tokens or k <= 0:
            return []
        vocabulary = self._bm25.vocab_dict
        known = [token for token in tokens if token in vocabulary]
        if not known:
            return []
        found, scores = self._bm25.retrieve(
            [known], k=min(k, len(self.ids)), show_progress=False, n_threads=1
        )
        hits = []
        for index, score in zip(np.asarray(found)[0], np.asarray(scores)[0], strict=True):
            if float(score) > 0.0:
                hits.append(LexicalHit(id=self.ids[int(index)], score=float(score)))
        return hits


class LexicalIndexes:
    """The process's lexical indexes, one per collection, rebuilt when its revision or its
    size changes (a writer that forgot the revision still shows as a different count).
    Building reads every chunk: it runs in the retrieval's worker thread, never on the event
    loop, and once per change (a lock per collection), not once per waiting query."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self._built: dict[str, tuple[tuple[Any, ...], LexicalIndex]] = {}

    def get(self, collection: Any, *, count: int) -> LexicalIndex:
        """The index of a Chroma collection (as `open_collection` returns it) at its current
        revision; `count` is its number of chunks, just read."""
        key = str(collection.id)
        stamp = ((collection.metadata or {}).get(REVISION_KEY), count)
        with self._lock:
            cached = self._built.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                cached = self._built.get(key)
                if cached is not None and cached[0] == stamp:
                    return cached[1]
            stored = collection.get(include=["documents"])
            index = LexicalIndex(stored["ids"], [text or "" for text in stored["documents"] or []])
            logger.info("lexical index of %r built: %d chunks", collection.name, len(index))
            with self._lock:
                self._built[key] = (stamp, index)
            return index

    def clear(self) -> None:
        with self._lock:
            self._built.clear()
            self._building.clear()


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[str]:
    """The ids of several rankings (best first) in one order: each id scores the sum of
    weight / (k + rank) over the rankings it appears in (rank from 1). Ties keep the order of
    the first ranking, then the next."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    first_seen = dict.fromkeys(item for ranking in rankings for item in ranking)
    order = {item: position for position, item in enumerate(first_seen)}
    return sorted(scores, key=lambda item: (-scores[item], order[item]))
