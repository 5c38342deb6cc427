"""An uploaded file's name, type and text: each bad kind refused with its code, nothing read
that the checks refuse."""

from __future__ import annotations

import pytest

from chat.documents.files import document_name, read_upload
from chat.protocol import ProtocolError
from chat.retrieval.docx import check_archive
from chat.retrieval.loaders import UnreadableFile
from tests.documents import samples


def refused(code: str, call: object, *args: object) -> str:
    with pytest.raises(ProtocolError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value.message


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("menu.pdf", "menu.pdf"),
        ("C:\\Users\\minji\\메뉴.docx", "메뉴.docx"),
        ("/home/x/notes.md", "notes.md"),
        ("  week 48.txt ", "week 48.txt"),
    ],
)
def test_names_lose_their_folders(raw: str, name: str) -> None:
    assert document_name(raw) == name


@pytest.mark.parametrize("raw", ["", ".env.txt", "a\nb.txt", "x" * 120 + ".txt", 'a"b.md', "/"])
def test_bad_names_are_invalid(raw: str) -> None:
    refused("invalid", document_name, raw)


@pytest.mark.parametrize("raw", ["setup.exe", "menu", "photo.png", "sheet.xlsx"])
def test_other_types_are_unsupported(raw: str) -> None:
    assert ".docx" in refused("unsupported_type", document_name, raw)


def test_a_docx_is_read_with_its_tables() -> None:
    data = samples.docx(
        ["This week's menu", "Yuzu tea 5,500 won"], [["Item", "Price"], ["Mocha", "6,000"]]
    )
    loaded = read_upload("menu.docx", data)
    assert "Yuzu tea 5,500 won" in loaded.text
    assert "Mocha | 6,000" in loaded.text
    assert loaded.title == "menu.docx"


def test_a_zip_bomb_is_refused_from_its_directory() -> None:
    data = samples.zip_bomb_docx(300)
    assert len(data) < 2 * 1024 * 1024
    message = refused("invalid", read_upload, "menu.docx", data)
    assert "expands" in message and "roomchat-upload" not in message


def test_a_zip_that_is_not_a_document_is_invalid(tmp_path: object) -> None:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    refused("invalid", read_upload, "menu.docx", out.getvalue())


def test_check_archive_reads_no_member(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bomb.docx"
    path.write_bytes(samples.zip_bomb_docx(300))
    with pytest.raises(UnreadableFile):
        check_archive(path)


def test_an_encrypted_pdf_is_invalid() -> None:
    message = refused("invalid", read_upload, "menu.pdf", samples.encrypted_pdf(["Secret menu"]))
    assert "encrypted" in message


def test_a_truncated_pdf_is_invalid() -> None:
    refused("invalid", read_upload, "menu.pdf", samples.truncated_pdf(["Latte 4,500"] * 40))


@pytest.mark.parametrize("name", ["menu.pdf", "menu.txt", "menu.docx", "menu.md"])
def test_a_renamed_program_is_unsupported(name: str) -> None:
    refused("unsupported_type", read_upload, name, samples.EXE)


def test_text_that_is_not_utf8_is_invalid() -> None:
    message = refused("invalid", read_upload, "menu.txt", "라떼".encode("euc-kr"))
    assert "UTF-8" in message


def test_a_good_pdf_is_read() -> None:
    loaded = read_upload("menu.pdf", samples.pdf(["Cold brew 5,000 won"], title="Menu"))
    assert "Cold brew" in loaded.text and loaded.title == "Menu"
