"""An uploaded file, checked and read: its name, its type, its text. Synchronous (the parsing
blocks): callers run it in a thread. Every refusal is a `ProtocolError`:

- `invalid` (400): a bad name, or a file of the right type that cannot be read (an encrypted or
  damaged PDF, a .docx bomb, text that is not UTF-8, no text at all);
- `unsupported_type` (415): an extension `ingest` does not read, or content that is not what
  the extension says (a program renamed `menu.pdf`).
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Final

from chat.protocol import ProtocolError
from chat.retrieval.loaders import SUPPORTED_SUFFIXES, LoadedDocument, UnreadableFile, load_document

MAX_NAME_CHARS: Final = 120  # Document.name's column
# Characters no file name shown in a room needs, and some (/ \\) that would name folders.
_BAD_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
# The first bytes of programs and archives that are never documents of a text type.
_BINARY_MAGIC: Final = (b"MZ", b"\x7fELF", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"PK\x03\x04")
_TEXT_SUFFIXES: Final = frozenset(SUPPORTED_SUFFIXES - {".pdf", ".docx"})


def document_name(raw: str) -> str:
    """The name a document is listed and cited as: the uploaded file's name without any folder
    a browser or client sent, NFC-normalised. `invalid` or `unsupported_type` otherwise."""
    name = unicodedata.normalize("NFC", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if not name or name.startswith(".") or len(name) > MAX_NAME_CHARS or _BAD_NAME.search(name):
        raise ProtocolError(
            "invalid",
            f"A document's name is 1 to {MAX_NAME_CHARS} characters, without / \\ : * ? \" < > | "
            "or control characters, and does not start with a dot.",
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("invalid", "A document's name is not valid Unicode.") from None
    if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ProtocolError("unsupported_type", unsupported_message())
    return name


def unsupported_message() -> str:
    kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
    return f"Upload a document of one of these types: {kinds}."


def check_content(name: str, head: bytes) -> None:
    """`unsupported_type` when the file's first bytes are not what its extension says."""
    suffix = Path(name).suffix.lower()
    if suffix == ".pdf":
        ok = b"%PDF-" in head[:1024]
    elif suffix == ".docx":
        ok = head.startswith(b"PK\x03\x04")
    else:
        ok = not head.startswith(_BINARY_MAGIC) and b"\x00" not in head
    if not ok:
        raise ProtocolError(
            "unsupported_type",
            f"This file is not a {suffix[1:].upper()} document (its content says otherwise).",
        )


def read_upload(name: str, data: bytes) -> LoadedDocument:
    """The title and text of the uploaded file `name` with content `data`. Checks the content
    against the extension, then reads it the way `ingest` reads a file (a .docx's zip directory
    is checked for a bomb before anything is decompressed)."""
    check_content(name, data[:8192])
    with tempfile.TemporaryDirectory(prefix="roomchat-upload-") as folder:
        # The loaders read paths, and a document without a title is titled by its file name.
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            return load_document(path)
        except UnreadableFile as err:
            # Never show where the server keeps the file.
            reason = str(err).replace(str(path), name).replace(folder, "")
            raise ProtocolError("invalid", f"{name} cannot be read: {reason}.") from None
