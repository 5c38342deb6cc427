"""Reading each supported format, and refusing bad files with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.retrieval.loaders import UnreadableFile, load_document
from tests.retrieval.conftest import make_pdf


def test_markdown_title_is_the_first_heading(tmp_path: Path) -> None:
    path = tmp_path / "menu.md"
    path.write_text("Intro line\n\n## 음료 메뉴 ##\n\n아메리카노 4,500원\n\n# Later\n", "utf-8")
    document = load_document(path)
    assert document.title == "음료 메뉴"
    assert "아메리카노 4,500원" in document.text


def test_text_title_is_the_file_name_and_a_bom_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "hours.txt"
    path.write_bytes("\ufeffOpen 8 to 21.\r\nClosed on Chuseok.".encode())
    document = load_document(path)
    assert document == type(document)(title="hours.txt", text="Open 8 to 21.\nClosed on Chuseok.")


def test_html_keeps_visible_text_and_drops_script_and_style(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title> Café &amp; Bakery </title><style>p {color: red}</style>"
        "<script>var secret = 'do not index';</script></head><body><h1>Ignored heading</h1>"
        "<p>Croffle costs\n   4,800 won.</p><div>Open<br>daily</div><noscript>x</noscript>"
        "</body></html>",
        "utf-8",
    )
    document = load_document(path)
    assert document.title == "Café & Bakery"
    assert "Croffle costs 4,800 won." in document.text
    assert "Open\ndaily" in document.text
    for hidden in ("color: red", "secret", "do not index"):
        assert hidden not in document.text


def test_html_without_title_uses_the_first_h1(tmp_path: Path) -> None:
    path = tmp_path / "p.htm"
    path.write_text("<body><h1>Seasonal <em>menu</em></h1><p>Strawberry latte</p></body>", "utf-8")
    assert load_document(path).title == "Seasonal menu"


def test_pdf_text_and_title(tmp_path: Path) -> None:
    path = tmp_path / "flyer.pdf"
    path.write_bytes(make_pdf(["Grapefruit ade is 6,000 won.", "Lemon ade too."], title="Flyer"))
    document = load_document(path)
    assert document.title == "Flyer"
    assert "Grapefruit ade is 6,000 won." in document.text


def test_csv_rows_become_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("item,price\n아메리카노,4500\nlatte,5000\n", "utf-8")
    assert load_document(path).text == "item: 아메리카노; price: 4500\n\nitem: latte; price: 5000"


def test_json_is_flattened_to_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "menu.json"
    path.write_text('[{"name": "croffle", "price": {"won": 4800}}, {"name": "bingsu"}]', "utf-8")
    assert load_document(path).text == "name: croffle\nprice.won: 4800\n\nname: bingsu"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("legacy.txt", "아메리카노".encode("cp949"), "not valid UTF-8"),
        ("binary.md", b"\x00\x01\x02 PNG-ish", "binary"),
        ("broken.pdf", b"%PDF-1.4\nthis is not a PDF at all", "cannot"),
        ("empty.md", b"  \n\n ", "no text"),
        ("bad.json", b"{not json", "invalid JSON"),
        ("image.png", b"\x89PNG", "unsupported file type .png"),
    ],
)
def test_bad_files_raise_with_a_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=reason):
        load_document(path)
