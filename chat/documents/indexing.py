"""The background job that makes an uploaded document searchable, and deleting one.

The HTTP view has already checked and read the file (`files.read_upload`) and admitted the
upload (`store.begin_upload`); this job chunks and embeds the text in a worker thread (the
event loop only awaits it), reporting progress on the upload's row as it goes. Only when every
passage is embedded is the room's collection touched: the new passages are written under ids
of their own (`<name>@<upload>#<n>`), then the previous version's are deleted, then the row
says the document is there, then the room hears `document.added`. A failure before the write
changes nothing; one during it removes what was written, so the old version stays whole.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from channels.db import database_sync_to_async
from chromadb.api.types import Embeddings
from django.db import close_old_connections

from chat import protocol, storage
from chat.background import keep_until_done, start_detached
from chat.documents import store
from chat.documents.store import NewUpload
from chat.errors import ChatError, RetrievalError
from chat.realtime.log import RoomLog
from chat.retrieval.chroma import get_client, open_collection
from chat.retrieval.chunking import DEFAULT_CHUNK_SIZE, DEFAULT_OVERLAP, split_chunks
from chat.retrieval.embeddings import get_embedding_function
from chat.retrieval.ingest import (
    EMBED_BATCH,
    PreparedFile,
    delete_document,
    mark_changed,
    write_file,
)
from chat.retrieval.loaders import LoadedDocument

logger = logging.getLogger(__name__)

# Embedding is CPU-bound (the local model) or waits on an API: two at a time per worker keeps
# answers' own retrieval (the shared thread pool) responsive while documents index.
_EXECUTOR: Final = ThreadPoolExecutor(max_workers=2, thread_name_prefix="documents")
# The running jobs of this process (the event loop keeps only weak references to tasks).
_jobs: set[asyncio.Task[Any]] = set()


def prepare(upload: NewUpload, document: LoadedDocument) -> PreparedFile:
    """Chunks and embeds the document, reporting progress; writes nothing to Chroma."""
    chunks = split_chunks(document.text, chunk_size=DEFAULT_CHUNK_SIZE, overlap=DEFAULT_OVERLAP)
    texts = [chunk.text for chunk in chunks]
    embed = get_embedding_function()
    embeddings: Embeddings = []
    for start in range(0, len(texts), EMBED_BATCH):
        embeddings.extend(embed(texts[start : start + EMBED_BATCH]))
        # The last few percent are the write.
        store.report_progress(upload.id, 0.95 * len(embeddings) / max(len(texts), 1))
    return PreparedFile(
        source=upload.name,
        ids=[f"{upload.name}@{upload.id}#{i}" for i in range(len(texts))],
        texts=texts,
        metadatas=[
            {
                "source": upload.name,
                "title": document.title,
                "chunk": i,
                "overlap": chunk.overlap,
                "upload": upload.id,
            }
            for i, chunk in enumerate(chunks)
        ],
        embeddings=embeddings,
    )


def write(upload: NewUpload, prepared: PreparedFile) -> None:
    """Writes the prepared passages into the room's collection, replacing the document's
    previous ones; on failure, takes the new ones out again and raises RetrievalError."""
    collection = open_collection(upload.collection, create=True)
    if collection is None:  # only when create=False; keeps the type checker honest
        raise RetrievalError("cannot create the room's collection")
    try:
        write_file(collection, prepared, batch=_max_batch())
    except Exception as err:
        try:
            collection.delete(ids=prepared.ids)
            mark_changed(collection)  # the lexical index follows the cleanup too
        except Exception:
            logger.warning("Could not remove the partly written passages of upload %s", upload.id)
        raise RetrievalError(f"writing upload {upload.id} failed: {err}") from err


def _max_batch() -> int:
    try:
        return max(1, int(get_client().get_max_batch_size()))
    except Exception:
        return 1000


def index(upload: NewUpload, document: LoadedDocument) -> dict[str, Any]:
    """The whole job, in a worker thread: prepare, write, the rows. Returns the
    `document.added` event to append. Marks the upload failed on any error, and re-raises."""
    try:
        prepared = prepare(upload, document)
        write(upload, prepared)
        saved, replaced = store.finish_upload(upload, len(prepared.ids))
        return protocol.document_added_event(document=store.document_info(saved), replaced=replaced)
    except Exception as err:
        shown = err.message if isinstance(err, ChatError) else "indexing failed"
        logger.warning("Upload %s of %s failed: %s", upload.id, upload.room, err)
        try:
            store.fail_upload(upload.id, f"Indexing failed ({shown}); nothing was changed.")
        except Exception:
            logger.warning("Could not mark upload %s failed", upload.id)
        raise
    finally:
        close_old_connections()


async def run(upload: NewUpload, document: LoadedDocument, log: RoomLog) -> None:
    """The job: index in a thread, then tell the room. Never raises (it runs detached)."""
    loop = asyncio.get_running_loop()
    try:
        event = await loop.run_in_executor(_EXECUTOR, index, upload, document)
    except Exception:
        return  # logged and marked failed by `index`
    try:
        seq = await log.append(upload.room, event)
        if seq is not None:
            await database_sync_to_async(storage.touch_room)(upload.room, seq)
    except Exception as err:
        # The document is searchable; only the notice is lost.
        logger.warning("The notice of upload %s could not be appended: %s", upload.id, err)


def start(upload: NewUpload, document: LoadedDocument, log: RoomLog) -> asyncio.Task[None]:
    """Start the job detached from the request that admitted it."""
    task = start_detached(run(upload, document, log), name=f"index {upload.id}")
    keep_until_done(_jobs, task, what=f"Indexing upload {upload.id}")
    return task


def remove(collection: str, name: str) -> int:
    """Takes the document's passages out of the room's collection (in a thread); returns how
    many. Answers already given keep their sources: those are stored with the answer."""
    found = open_collection(collection) if collection else None
    if found is None:
        return 0
    try:
        return delete_document(found, name)
    except Exception as err:
        raise RetrievalError(f"deleting {name!r} from {collection!r} failed: {err}") from err


async def delete(room: str, name: str, user: dict[str, str], collection: str, log: RoomLog) -> None:
    """Delete the document: its passages first (at once unsearchable), then its row, then the
    room's `document.deleted` event."""
    await asyncio.to_thread(remove, collection, name)
    gone = await database_sync_to_async(store.finish_delete)(room, name)
    if not gone:
        return
    seq = await log.append(room, protocol.document_deleted_event(name=name, user=user))
    if seq is not None:
        await database_sync_to_async(storage.touch_room)(room, seq)
