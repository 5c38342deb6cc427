"""Splitting documents into overlapping chunks for embedding.

Character-based, so it behaves the same for Korean and English. A chunk ends at the coarsest
boundary that fits: a paragraph, then a line, a sentence, a word, and only for text with no
boundary at all, a hard cut. Each chunk after the first starts with the tail of the previous one
(up to `overlap` characters, starting at a sentence or word boundary), so a fact that straddles
two chunks is whole in at least one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_CHUNK_SIZE = 500
DEFAULT_OVERLAP = 80

# Sentence ends, including the ideographic full stop and full-width marks (escaped for ruff).
_PUNCT = ".!?\u3002\uff01\uff1f\u2026"
# From coarse to fine, with the separator used to join pieces split at that level.
_LEVELS: list[tuple[re.Pattern[str], str]] = [
    # Markdown sections first, so a heading stays with the text under it.
    (re.compile(r"\n\s*\n(?=#{1,6}\s)"), "\n\n"),
    (re.compile(r"\n[ \t]*\n\s*"), "\n\n"),
    (re.compile(r"\n"), "\n"),
    (re.compile(rf"(?<=[{_PUNCT}])\s+"), " "),
    (re.compile(r"\s+"), " "),
]
_SENTENCE_END = re.compile(rf"[{_PUNCT}]\s+|\n")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unifies newlines, trims line ends and squeezes runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk's text and how many of its first characters repeat the previous chunk."""

    text: str
    overlap: int = 0


def split_text(
    text: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, overlap: int = DEFAULT_OVERLAP
) -> list[str]:
    """Chunks of at most `chunk_size` characters (overlap included) covering all of `text`."""
    return [chunk.text for chunk in split_chunks(text, chunk_size=chunk_size, overlap=overlap)]


def split_chunks(
    text: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, overlap: int = DEFAULT_OVERLAP
) -> list[Chunk]:
    """Like `split_text`, and says where each chunk's own text starts (after its overlap)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    if not 0 <= overlap < chunk_size:
        raise ValueError("overlap must be at least 0 and smaller than chunk_size")
    text = normalize_text(text)
    if not text:
        return []
    chunks: list[Chunk] = []
    current = ""
    repeated = 0
    # Pieces leave room for the overlap, so a tail and the next piece always fit together.
    for separator, piece in _pieces(text, chunk_size - overlap, 0):
        if not current:
            current = piece
        elif len(current) + len(separator) + len(piece) <= chunk_size:
            current += separator + piece
        else:
            chunks.append(Chunk(current, repeated))
            tail = _tail(current, overlap)
            fits = bool(tail) and len(tail) + len(separator) + len(piece) <= chunk_size
            # After a hard cut the separator is "": the tail and the piece are one run of text.
            current = tail + separator + piece if fits else piece
            repeated = len(tail) + len(separator) if fits else 0
    if current:
        chunks.append(Chunk(current, repeated))
    return chunks


def _pieces(text: str, size: int, level: int) -> list[tuple[str, str]]:
    """(separator before, piece) pairs, every piece at most `size` characters."""
    if len(text) <= size:
        return [("", text)]
    if level == len(_LEVELS):
        return [("", text[start : start + size]) for start in range(0, len(text), size)]
    pattern, joiner = _LEVELS[level]
    result: list[tuple[str, str]] = []
    for part in pattern.split(text):
        part = part.strip()
        if not part:
            continue
        sub = _pieces(part, size, level + 1)
        result.append((joiner if result else "", sub[0][1]))
        result.extend(sub[1:])
    return result


def _tail(chunk: str, overlap: int) -> str:
    """The end of `chunk` to repeat at the start of the next one, from a clean boundary."""
    if overlap <= 0 or len(chunk) <= overlap:
        return ""
    tail = chunk[-overlap:]
    boundary = _SENTENCE_END.search(tail)
    if boundary and boundary.end() < len(tail):
        return tail[boundary.end() :].strip()
    space = _WHITESPACE.search(tail)
    if space and space.end() < len(tail):
        return tail[space.end() :].strip()
    # No boundary at all (one long run of characters): the raw tail is the best we have.
    return tail.strip()
