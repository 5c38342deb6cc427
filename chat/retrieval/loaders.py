"""Reading the text and title out of the files `manage.py ingest` (and a room's upload,
`chat.documents`) accepts; Word's .docx is read by `chat.retrieval.docx`.

Text files must be UTF-8 (a BOM is fine). Anything a reader cannot handle raises
`UnreadableFile` with a reason a person can act on; the caller skips that file and goes on.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from chat.retrieval.chunking import normalize_text


class UnreadableFile(Exception):
    """A file that cannot be ingested; the message is the reason shown in the summary."""


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    title: str
    text: str


def load_document(path: Path) -> LoadedDocument:
    """The title and plain text of `path`, chosen by its extension."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UnreadableFile(f"unsupported file type {path.suffix or '(none)'}")
    try:
        title, text = reader(path)
    except UnreadableFile:
        raise
    except OSError as err:
        raise UnreadableFile(f"cannot read the file: {err.strerror or err}") from err
    except Exception as err:
        # Parsers (pypdf above all) raise many kinds of errors on damaged files.
        raise UnreadableFile(f"cannot parse the file: {type(err).__name__}: {err}") from err
    text = normalize_text(text)
    if not text:
        raise UnreadableFile("no text found in the file")
    return LoadedDocument(title=(title or "").strip() or path.name, text=text)


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise UnreadableFile("looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UnreadableFile(
            f"not valid UTF-8 (byte {err.start}); convert the file to UTF-8"
        ) from err


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _read_text(path: Path) -> tuple[str, str]:
    return "", _read_utf8(path)


def _read_markdown(path: Path) -> tuple[str, str]:
    text = _read_utf8(path)
    heading = _MD_HEADING.search(text)
    return (heading.group(1) if heading else ""), text


def _read_pdf(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader

    reader = PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):
        raise UnreadableFile("the PDF is encrypted")
    pages = [page.extract_text() or "" for page in reader.pages]
    title = ""
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title)
    return title, "\n\n".join(pages)


# Markers for block ends and <br>, control characters that never occur in HTML text.
_BLOCK, _LINE = "\x1e", "\x1f"


class _HTMLText(HTMLParser):
    """Collects visible text; blocks become paragraphs, script and style are dropped."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    BLOCKS = frozenset(
        {
            "address",
            "article",
            "aside",
            "blockquote",
            "dd",
            "div",
            "dl",
            "dt",
            "figcaption",
            "figure",
            "footer",
            "form",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "header",
            "hr",
            "li",
            "main",
            "nav",
            "ol",
            "p",
            "pre",
            "section",
            "table",
            "td",
            "th",
            "tr",
            "ul",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.first_h1 = ""
        self._skip_depth = 0
        self._in_title = False
        self._h1: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "br":
            self.parts.append(_LINE)
        elif tag in self.BLOCKS:
            self.parts.append(_BLOCK)
            if tag == "h1" and not self.first_h1:
                self._h1 = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.BLOCKS:
            self.parts.append(_BLOCK)
            if tag == "h1" and self._h1 is not None:
                self.first_h1 = " ".join("".join(self._h1).split())
                self._h1 = None

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self.title += data
            return
        self.parts.append(data)
        if self._h1 is not None:
            self._h1.append(data)


def _read_html(path: Path) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(_read_utf8(path))
    parser.close()
    # Source line breaks mean nothing in HTML: only blocks and <br> break the text.
    paragraphs = []
    for block in "".join(parser.parts).split(_BLOCK):
        lines = [" ".join(line.split()) for line in block.split(_LINE)]
        if paragraph := "\n".join(line for line in lines if line):
            paragraphs.append(paragraph)
    text = "\n\n".join(paragraphs)
    title = " ".join(parser.title.split()) or parser.first_h1
    return title, text


def _read_csv(path: Path) -> tuple[str, str]:
    rows = [row for row in csv.reader(io.StringIO(_read_utf8(path))) if any(c.strip() for c in row)]
    if len(rows) < 2:
        return "", "\n".join(", ".join(row) for row in rows)
    header, *body = rows
    # One paragraph per row, "column: value", so chunks break between rows.
    lines = ["; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False) if v) for row in body]
    return "", "\n\n".join(lines)


def _json_lines(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_lines(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _json_lines(item, path)
    elif value is not None:
        yield f"{path}: {value}" if path else str(value)


def _read_json(path: Path) -> tuple[str, str]:
    try:
        data = json.loads(_read_utf8(path))
    except json.JSONDecodeError as err:
        raise UnreadableFile(f"invalid JSON: {err}") from err
    # One paragraph per top-level item (list element or key).
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        items = [{key: value} for key, value in data.items()]
    else:
        items = [data]
    return "", "\n\n".join("\n".join(_json_lines(item, "")) for item in items)


def _read_docx(path: Path) -> tuple[str, str]:
    # Imported when a .docx comes: chat.retrieval.docx imports UnreadableFile from here.
    from chat.retrieval.docx import read_docx

    return read_docx(path)


READERS: dict[str, Callable[[Path], tuple[str, str]]] = {
    ".txt": _read_text,
    ".text": _read_text,
    ".md": _read_markdown,
    ".markdown": _read_markdown,
    ".pdf": _read_pdf,
    ".html": _read_html,
    ".htm": _read_html,
    ".csv": _read_csv,
    ".json": _read_json,
    ".docx": _read_docx,
}
SUPPORTED_SUFFIXES = frozenset(READERS)
