"""Word (.docx) documents: their text, after checking the archive cannot blow up.

A .docx is a zip. Before python-docx opens it, the zip's directory is read (without
decompressing anything) and refused when the declared sizes or compression ratios are those of a
decompression bomb: too many members, too large a total once uncompressed, or a member that
expands more than any real document does. python-docx (python-openxml, kept since 2013, on
lxml) then reads the paragraphs and tables in document order.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Final

from chat.retrieval.loaders import UnreadableFile

MAX_MEMBERS: Final = 2000
# Real documents: text parts compress 5-20x, images hardly; a bomb compresses 1000x and more.
MAX_RATIO: Final = 200
# Members smaller than this are not judged by their ratio (an empty part compresses "infinitely").
RATIO_FLOOR_BYTES: Final = 1 << 20
MAX_UNCOMPRESSED_BYTES: Final = 200 << 20


def check_archive(path: Path) -> None:
    """Refuse a zip whose directory declares a bomb; reads no member's data."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise UnreadableFile("not a valid .docx file (the zip archive is damaged)") from err
    if len(members) > MAX_MEMBERS:
        raise UnreadableFile(f"the .docx archive has too many parts ({len(members)})")
    total = 0
    for member in members:
        total += member.file_size
        packed = max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR_BYTES and member.file_size / packed > MAX_RATIO:
            raise UnreadableFile("the .docx archive expands too much (a decompression bomb?)")
    if total > MAX_UNCOMPRESSED_BYTES:
        raise UnreadableFile(
            f"the .docx archive expands to more than {MAX_UNCOMPRESSED_BYTES >> 20} MB"
        )


def read_docx(path: Path) -> tuple[str, str]:
    """The title (core properties) and text (paragraphs and table rows) of a .docx."""
    check_archive(path)
    import docx  # python-docx; imported here like pypdf, only when a .docx comes

    document = docx.Document(str(path))
    parts: list[str] = []
    body = document.element.body
    for block in body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            text = "".join(node.text or "" for node in block.iter() if node.tag.endswith("}t"))
            parts.append(text)
        elif tag == "tbl":
            for row in block.iter():
                if row.tag.endswith("}tr"):
                    cells = []
                    for cell in row.iterchildren():
                        if cell.tag.endswith("}tc"):
                            cells.append(
                                " ".join(
                                    (node.text or "")
                                    for node in cell.iter()
                                    if node.tag.endswith("}t")
                                ).strip()
                            )
                    parts.append(" | ".join(c for c in cells if c))
    title = document.core_properties.title or ""
    return title, "\n\n".join(p for p in parts if p.strip())
