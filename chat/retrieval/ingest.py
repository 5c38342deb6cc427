"""Loading files into a Chroma collection: `manage.py ingest` is a thin shell around
`ingest_paths`.

Each file becomes chunks with ids `"<source>#<index>"`, where source is the path relative to
the working directory (or as given when outside it). Ingesting a file again replaces its chunks:
the new ones are upserted, then that source's other ids are deleted. Everything for a file
(reading, chunking, embedding) is done before the collection is touched, so a file that fails
leaves its previous chunks as they were.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.errors import NotFoundError
from django.conf import settings
from tqdm import tqdm

from chat.errors import ChatError, RetrievalError
from chat.retrieval.chroma import get_client, open_collection
from chat.retrieval.chunking import DEFAULT_CHUNK_SIZE, DEFAULT_OVERLAP, split_chunks
from chat.retrieval.embeddings import get_embedding_function
from chat.retrieval.loaders import SUPPORTED_SUFFIXES, UnreadableFile, load_document

EMBED_BATCH = 32


@dataclass
class IngestReport:
    """What one run did; the command prints it as the summary."""

    collection: str
    files: int = 0
    chunks: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class PreparedFile:
    """A file's chunks with their embeddings, ready to be written in one go."""

    source: str
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, str | int]]
    embeddings: Embeddings


def source_name(path: Path) -> str:
    """The `source` stored with a file's chunks: relative to the working directory when the
    file is inside it, else the absolute path. Always with forward slashes."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def chunk_id(source: str, index: int) -> str:
    """Stable and readable: the same file and position always get the same id."""
    return f"{source}#{index}"


def find_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files to ingest under `paths` (folders recursively, hidden entries ignored) and the
    ones skipped for their type. Raises FileNotFoundError naming every missing path."""
    given_paths = [Path(p) for p in paths]
    missing = [str(p) for p in given_paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"path not found: {', '.join(missing)}")
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for given in given_paths:
        candidates = [given] if given.is_file() else sorted(_walk(given))
        for path in candidates:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                files.append(path)
            else:
                skipped.append(
                    (source_name(path), f"unsupported file type {path.suffix or '(none)'}")
                )
    return files, skipped


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, names in os.walk(folder):
        # Hidden folders (.git, .venv) and files (.DS_Store) are never documents.
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                yield Path(root) / name


def prepare_file(
    path: Path,
    *,
    embedding_function: EmbeddingFunction[Documents],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_OVERLAP,
) -> PreparedFile:
    """Reads, chunks and embeds one file. Raises UnreadableFile or ChatError; writes nothing."""
    document = load_document(path)
    source = source_name(path)
    chunks = split_chunks(document.text, chunk_size=chunk_size, overlap=overlap)
    texts = [chunk.text for chunk in chunks]
    embeddings: Embeddings = []
    for start in range(0, len(texts), EMBED_BATCH):
        embeddings.extend(embedding_function(texts[start : start + EMBED_BATCH]))
    return PreparedFile(
        source=source,
        ids=[chunk_id(source, i) for i in range(len(texts))],
        texts=texts,
        metadatas=[
            # `overlap`: where the chunk's own text starts; snippets begin there.
            {"source": source, "title": document.title, "chunk": i, "overlap": chunk.overlap}
            for i, chunk in enumerate(chunks)
        ],
        embeddings=embeddings,
    )


def write_file(collection: Collection, prepared: PreparedFile, *, batch: int) -> int:
    """Upserts a prepared file's chunks, then deletes its stale ones; returns how many."""
    for start in range(0, len(prepared.ids), batch):
        end = start + batch
        collection.upsert(
            ids=prepared.ids[start:end],
            documents=prepared.texts[start:end],
            metadatas=prepared.metadatas[start:end],  # type: ignore[arg-type]
            embeddings=prepared.embeddings[start:end],
        )
    existing = collection.get(where={"source": prepared.source}, include=[])["ids"]
    stale = sorted(set(existing) - set(prepared.ids))
    if stale:
        collection.delete(ids=stale)
    return len(stale)


def delete_document(collection: Collection, source: str) -> int:
    """Removes every chunk of the document stored as `source`; returns how many."""
    existing = collection.get(where={"source": source}, include=[])["ids"]
    if existing:
        collection.delete(ids=existing)
    return len(existing)


def ingest_paths(
    paths: Sequence[str | Path],
    *,
    collection: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    reset: bool = False,
    client: ClientAPI | None = None,
    embedding_function: EmbeddingFunction[Documents] | None = None,
    progress: bool | None = None,
) -> IngestReport:
    """Ingests files and folders into `collection` (default CHAT_COLLECTION). Bad files are
    reported in `skipped`; missing paths raise FileNotFoundError before anything is written;
    Chroma failures raise RetrievalError. `progress=None` shows the bar only on a terminal."""
    started = time.perf_counter()
    name = collection or settings.CHAT_COLLECTION
    if chunk_size < 100:
        raise ValueError("chunk size must be at least 100 characters")
    split_chunks("", chunk_size=chunk_size, overlap=overlap)  # validates the overlap
    files, skipped = find_files(paths)
    report = IngestReport(collection=name, skipped=skipped)
    client = client or get_client()
    ef = embedding_function or get_embedding_function()
    if reset:
        _drop(client, name)
    target = open_collection(name, create=True, client=client, embedding_function=ef)
    if target is None:  # only when create=False; keeps the type checker honest
        raise RetrievalError(f"cannot create collection {name!r}")
    batch = _max_batch(client)

    with tqdm(
        files, unit="file", disable=None if progress is None else not progress, file=sys.stderr
    ) as bar:
        for path in bar:
            shown = source_name(path)
            bar.set_postfix_str(shown, refresh=False)
            try:
                prepared = prepare_file(
                    path, embedding_function=ef, chunk_size=chunk_size, overlap=overlap
                )
            except UnreadableFile as err:
                report.skipped.append((shown, str(err)))
                continue
            except ChatError as err:
                report.skipped.append((shown, err.message))
                continue
            try:
                report.removed += write_file(target, prepared, batch=batch)
            except Exception as err:
                raise RetrievalError(
                    f"writing {shown} to collection {name!r} failed: {err}"
                ) from err
            report.files += 1
            report.chunks += len(prepared.ids)
    report.skipped.sort()
    report.seconds = time.perf_counter() - started
    return report


def _drop(client: ClientAPI, name: str) -> None:
    try:
        client.delete_collection(name)
    except NotFoundError:
        pass
    except Exception as err:
        raise RetrievalError(f"cannot delete collection {name!r}: {err}") from err


def _max_batch(client: ClientAPI) -> int:
    try:
        return max(1, int(client.get_max_batch_size()))
    except Exception:
        # Older servers do not report it; Chroma's embedded limit is far above this.
        return 1000
