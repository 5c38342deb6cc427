"""Chunking, snippets and scores: the pure functions under ingest and retrieval."""

from __future__ import annotations

import itertools

import pytest

from chat.retrieval.chroma import make_snippet, similarity
from chat.retrieval.chunking import split_chunks, split_text

KOREAN = "\n\n".join(
    f"문단 {i}. 아메리카노는 {i},500원입니다. 카페라떼는 우유가 들어가며 {i},000원입니다. "
    f"Croffle number {i} costs {i},800 won."
    for i in range(12)
)


@pytest.mark.parametrize(("size", "overlap"), [(120, 0), (200, 40), (500, 80), (1000, 150)])
def test_chunks_respect_the_size_and_cover_every_sentence(size: int, overlap: int) -> None:
    chunks = split_text(KOREAN, chunk_size=size, overlap=overlap)
    assert all(len(chunk) <= size for chunk in chunks)
    joined = "\n".join(chunks)
    for i in range(12):
        assert f"문단 {i}." in joined
        assert f"Croffle number {i} costs {i},800 won." in joined


def test_short_text_is_one_chunk_and_blank_text_none() -> None:
    assert split_text("  짧은 글입니다.  \n") == ["짧은 글입니다."]
    assert split_text(" \n\n \t") == []


def test_chunks_break_at_paragraphs_and_sentences_not_inside_words() -> None:
    chunks = split_text(KOREAN, chunk_size=200, overlap=0)
    for chunk in chunks:
        assert chunk.startswith("문단") or chunk.startswith(("아메리카노", "카페라떼", "Croffle"))
        assert chunk.endswith(("다.", "won."))


def test_each_chunk_starts_with_the_tail_of_the_previous_one() -> None:
    chunks = split_chunks(KOREAN, chunk_size=200, overlap=60)
    assert len(chunks) > 3
    assert chunks[0].overlap == 0
    for previous, current in itertools.pairwise(chunks):
        # `overlap` counts the repeated tail and the separator after it.
        repeated = current.text[: current.overlap].rstrip()
        assert 0 < len(repeated) <= 60
        assert previous.text.endswith(repeated)
        # The repeated part starts at a sentence or word boundary of the previous chunk.
        assert previous.text[-len(repeated) - 1] in " \n"


def test_a_markdown_heading_stays_with_its_section() -> None:
    text = "# Menu\n\n" + "\n\n".join(
        f"## Section {i}\n\nPrice list number {i} with several words in it." for i in range(8)
    )
    for chunk in split_text(text, chunk_size=120, overlap=0):
        assert not chunk.rstrip().endswith(tuple(f"## Section {i}" for i in range(8)))


def test_text_without_any_space_is_cut_hard_with_overlap() -> None:
    chunks = split_text("가" * 450, chunk_size=200, overlap=50)
    assert [len(c) for c in chunks] == [150, 200, 200]
    assert sum(len(c) for c in chunks) - 50 * (len(chunks) - 1) == 450


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_bad_sizes_are_rejected(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        split_text("text", chunk_size=size, overlap=overlap)


def test_snippet_is_cut_at_a_word_boundary() -> None:
    text = "아메리카노는   에스프레소에\n물을 더한 기본 커피입니다. " * 20
    snippet = make_snippet(text, 100)
    assert len(snippet) <= 101
    assert snippet.endswith("…")
    assert "  " not in snippet and "\n" not in snippet
    assert text.replace("\n", " ").split()[:3] == snippet.split()[:3]
    assert make_snippet("short text") == "short text"
    assert make_snippet("가" * 300, 100) == "가" * 100 + "…"


def test_snippet_drops_heading_marks_and_the_overlap() -> None:
    text = "end of the previous chunk.\n\n## Desserts\n\nCroffle 4,800 won. " + "More. " * 30
    assert make_snippet(text, skip=28).startswith("Desserts Croffle 4,800 won.")
    # Not when skipping would leave too little to show.
    assert make_snippet("tail. ## Short", 100, skip=6) == "tail. ## Short"


def test_scores_are_in_zero_one_and_higher_is_closer() -> None:
    assert similarity(0.0, "cosine") == 1.0
    assert similarity(0.2, "cosine") > similarity(0.4, "cosine")
    assert similarity(1.7, "cosine") == 0.0
    assert similarity(0.5, "l2") == pytest.approx(0.75)
    assert similarity(4.0, "l2") == 0.0
