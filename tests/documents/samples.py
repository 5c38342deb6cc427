"""Files for the documents tests, made here: good ones, and each kind of bad one."""

from __future__ import annotations

import io
import zipfile

from tests.retrieval.conftest import make_pdf


def pdf(lines: list[str], title: str | None = None) -> bytes:
    return make_pdf(lines, title)


def encrypted_pdf(lines: list[str]) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(lines))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def truncated_pdf(lines: list[str]) -> bytes:
    whole = make_pdf(lines)
    return whole[: len(whole) // 3]


def docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bomb_docx(megabytes: int = 300) -> bytes:
    """A .docx-shaped zip whose one part expands from a few hundred KB to `megabytes` MB of
    zeros (written in pieces, so the test itself stays small in memory)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            piece = b"\0" * (1 << 20)
            for _ in range(megabytes):
                part.write(piece)
    return out.getvalue()


# The first bytes of a Windows program: what a `.exe` renamed `menu.pdf` or `menu.txt` starts
# with.
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 240 + b"PE\0\0"
