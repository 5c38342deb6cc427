"""The room page's citations, feedback, earlier messages, search and export, in Chromium.
Citations and feedback against the scripted WebSocket server (fakeserver.py); earlier
messages, search and export against the real server, with a room imported from a JSON export
(`manage.py importroom`)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Browser, RoomchatServer, no_page_errors
from tests.browser.fakeserver import OTHER, FakeRoomServer, source
from tests.browser.test_room_page import answer, open_room

pytestmark = pytest.mark.browser


async def test_citations_link_to_their_sources_even_split_across_deltas(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server)
        server.question("q1", "What do you serve?", user=OTHER)
        sources = [
            source(1, "Menu drinks", "Espresso, latte and green tea."),
            source(2, "Opening hours", "Open 8 to 18 every day."),
        ]
        chunks = ["We serve latte ", "[", "1", "]", ", open daily [2", "] (see [", "3])."]
        server.answer("a1", "q1", chunks[:4], sources=sources, end=False)
        a1 = answer(page, "a1")
        # While it is still being written, the citation already links.
        await expect(a1.locator(".md a.cite")).to_have_count(1)
        for chunk in chunks[4:]:
            server.emit({"type": "answer.delta", "answer_id": "a1", "text": chunk})
        server.end("a1", "".join(chunks))
        await expect(a1).to_have_attribute("data-status", "complete")
        cites = a1.locator(".md a.cite")
        await expect(cites).to_have_count(2)
        assert [await c.get_attribute("href") for c in await cites.all()] == [
            "#src-a1-1",
            "#src-a1-2",
        ]
        # No source 3: plain text.
        await expect(a1.locator(".md")).to_contain_text("(see [3]).")
        details = a1.locator("details.sources")
        assert await details.get_attribute("open") is None
        await cites.nth(1).click()
        second = page.locator("#src-a1-2")
        await expect(details).to_have_attribute("open", "")
        await expect(second).to_be_visible()
        await expect(second).to_be_focused()
        # The passage and the document's name.
        await expect(second.locator(".source-origin")).to_have_text("knowledge/opening-hours.md")
        await expect(second.locator(".source-snippet")).to_have_text("Open 8 to 18 every day.")


async def test_citations_from_history_and_sources_that_come_late_link_too(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.history = [
        {"id": "q1", "role": "user", "text": "Hours?", "status": "complete",
         "created": "2026-11-23T09:40:00+00:00", "user": OTHER},
        {"id": "a1", "role": "assistant", "question_id": "q1", "status": "complete",
         "created": "2026-11-23T09:40:01+00:00", "text": "Open at 8 [1].",
         "sources": [source(1, "Opening hours", "Open 8 to 18.")]},
    ]  # fmt: skip
    page = await open_room(browser, roomchat_server, server)
    await expect(answer(page, "a1").locator("a.cite")).to_have_attribute("href", "#src-a1-1")


async def test_citation_markup_never_runs_or_links_anywhere_but_the_page(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    hostile = (
        "[<img src=x onerror=\"window.__xss='cite'\">] and [1](javascript:window.__xss='link') "
        "and [1][x] and <a href=\"javascript:window.__xss='a'\">[1]</a> and `[1]` and [1]\n\n"
        "[x]: javascript:window.__xss='ref'\n\n"
        "[<script>window.__xss='script'</script>1]"
    )
    server.question("q1", "[<img src=x onerror=\"window.__xss='question'\">] [1]")
    chunks = [hostile[i : i + 3] for i in range(0, len(hostile), 3)]
    server.answer("a1", "q1", chunks, sources=[source(1, "Guide", "How it works.")], end=False)
    server.end("a1", hostile)
    a1 = answer(page, "a1")
    await expect(a1).to_have_attribute("data-status", "complete")
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__xss") is None
    log = page.locator("#log")
    for tag in ("script", "img", "iframe"):
        assert await log.locator(tag).count() == 0, tag
    assert await log.locator('a[href^="javascript"]').count() == 0
    for link in await a1.locator(".md a").all():
        href = await link.get_attribute("href") or ""
        assert href == "#src-a1-1" or href.startswith("http"), href
    # Inside code the text stays as written; a question's [1] is never a link.
    await expect(a1.locator(".md code")).to_have_text("[1]")
    assert await page.locator("#msg-q1 a").count() == 0
    await expect(a1.locator(".md")).to_contain_text("<img src=x onerror")


async def test_feedback_buttons_send_show_counts_live_and_take_a_vote_back(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.history = [
        {"id": "q1", "role": "user", "text": "Latte?", "status": "complete",
         "created": "2026-11-23T09:40:00+00:00", "user": OTHER},
        {"id": "a1", "role": "assistant", "question_id": "q1", "status": "complete",
         "created": "2026-11-23T09:40:01+00:00", "text": "4,500 won.", "sources": [],
         "feedback": {"up": 2, "down": 1, "rev": 3}},
    ]  # fmt: skip
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server)
        a1 = answer(page, "a1")
        up, down = a1.locator(".fb-up"), a1.locator(".fb-down")
        await expect(up).to_have_text("2")
        await expect(down).to_have_text("1")
        await expect(up).to_have_attribute("aria-label", "Helpful (2)")
        await up.click()
        assert await server.wait_received("feedback") == {
            "type": "feedback",
            "answer_id": "a1",
            "value": "up",
        }
        await expect(up).to_have_attribute("aria-pressed", "true")
        server.emit({"type": "answer.feedback", "answer_id": "a1", "up": 3, "down": 1, "rev": 4})
        await expect(up).to_have_text("3")
        # Counts of an earlier change that arrive late change nothing.
        server.emit({"type": "answer.feedback", "answer_id": "a1", "up": 9, "down": 9, "rev": 2})
        await down.click()
        assert (await server.wait_received("feedback", nth=2))["value"] == "down"
        await expect(down).to_have_attribute("aria-pressed", "true")
        await expect(up).to_have_attribute("aria-pressed", "false")
        await expect(up).to_have_text("3")
        await down.click()
        assert (await server.wait_received("feedback", nth=3))["value"] is None
        await expect(down).to_have_attribute("aria-pressed", "false")
        # A new answer gets its buttons when it ends; in Korean, the labels are Korean.
        await page.locator("[data-lang-toggle]").first.click()
        await expect(up).to_have_attribute("aria-label", "도움이 됨 (3)")


def _export(room: str, count: int) -> dict[str, Any]:
    messages = []
    for n in range(1, count + 1):
        text = f"message {n}"
        if n == 3:
            text = "아이스 아메리카노 두 잔 주세요"
        messages.append(
            {
                "id": f"m_{room}_{n}",
                "seq": n,
                "end_seq": None,
                "role": "message",
                "status": "complete",
                "user_id": "g:abc123",
                "user_name": "Calm Otter",
                "client_id": "",
                "question_id": None,
                "text": text,
                "sources": [],
                "usage": None,
                "error": None,
                "created": f"2026-11-{1 + n // 60:02d}T09:{n % 60:02d}:00+00:00",
                "finished": None,
                "redacted": False,
                "feedback": {"up": 0, "down": 0},
            }
        )
    return {
        "format": "roomchat.room-export",
        "version": 1,
        "room": {"name": room, "title": "", "description": ""},
        "messages": messages,
    }


async def test_scroll_up_to_the_beginning_search_and_export(
    browser: Browser, roomchat_server: RoomchatServer, tmp_path: Path
) -> None:
    room = f"hist-{secrets.token_hex(4)}"
    path = tmp_path / "room.json"
    path.write_text(json.dumps(_export(room, 120), ensure_ascii=False))
    roomchat_server.manage("importroom", str(path))
    with no_page_errors(browser):
        page = await browser.page()
        await page.goto(f"{roomchat_server.url}/rooms/{room}/")
        await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
        turns = page.locator("#log article.said")
        await expect(turns).to_have_count(50)
        await expect(page.locator("#older-button")).to_be_visible()
        # Scrolling up to the top loads the page before, then the one before that.
        scroller = page.locator("#log-scroll")
        for expected in (100, 120):
            await scroller.evaluate("s => s.scrollBy(0, -200)")
            await scroller.evaluate("s => s.scrollTo(0, 0)")
            await expect(turns).to_have_count(expected)
            # The reader's place is kept: the top is not where the new page begins.
            assert await scroller.evaluate("s => s.scrollTop") > 0
        await expect(page.locator("#older-start")).to_be_visible()
        await expect(page.locator("#older-button")).to_be_hidden()
        texts = await page.locator("#log .said-text").all_inner_texts()
        assert texts[0] == "message 1" and texts[-1] == "message 120"
        assert len(set(texts)) == 120

        # Search, in Korean, from a fresh page that shows only the last 50.
        page = await browser.page(locale="ko-KR")
        await page.goto(f"{roomchat_server.url}/rooms/{room}/")
        await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
        await page.set_viewport_size({"width": 1280, "height": 800})
        await page.fill("#search-input", "아메리카노")
        await page.locator("#search-form button[type=submit]").click()
        await expect(page.locator("#search-status")).to_have_text("1개 찾음")
        hit = page.locator(".search-hit")
        await expect(hit).to_contain_text("아이스 아메리카노 두 잔 주세요")
        await hit.click()
        # Not shown yet: the page loads earlier messages until it is, then shows it.
        found = page.locator(f"#msg-m_{room}_3")
        await expect(found).to_be_in_viewport()
        await expect(found).to_have_class("msg said found")
        await page.fill("#search-input", "없는말")
        await page.locator("#search-form button[type=submit]").click()
        await expect(page.locator("#search-status")).to_have_text(
            "“없는말”에 대한 결과가 없습니다."
        )

        # Export: both links download the room.
        for kind, check in (("md", "아이스 아메리카노"), ("json", '"roomchat.room-export"')):
            link = page.locator(f"#export-{kind}")
            await expect(link).to_have_attribute("download", f"{room}.{kind}")
            if kind == "md":  # in the page's language
                assert (await link.get_attribute("href") or "").endswith("lang=ko")
            async with page.expect_download() as waiting:
                await link.click()
            download = await waiting.value
            saved = tmp_path / f"out.{kind}"
            await download.save_as(saved)
            assert check in saved.read_text()


async def test_feedback_end_to_end_counts_for_everyone_and_mine_after_a_reload(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    from tests.browser.test_e2e import ask, last_answer, new_room, open_live

    room = new_room()
    with no_page_errors(browser):
        alice = await open_live(browser, roomchat_server, room)
        bob = await open_live(browser, roomchat_server, room, locale="ko-KR")
        await ask(alice, "How much is a latte? [[sim tokens=8]]")
        for page in (alice, bob):
            await expect(last_answer(page)).to_have_attribute(
                "data-status", "complete", timeout=30000
            )
        await last_answer(alice).locator(".fb-up").click()
        await expect(last_answer(bob).locator(".fb-up")).to_have_text("1")
        await expect(last_answer(bob).locator(".fb-up")).to_have_attribute("aria-pressed", "false")
        await last_answer(bob).locator(".fb-down").click()
        await expect(last_answer(alice).locator(".fb-down")).to_have_text("1")
        await alice.reload()
        await expect(alice.locator("#conn-status")).to_have_attribute("data-state", "live")
        up = last_answer(alice).locator(".fb-up")
        await expect(up).to_have_text("1")
        await expect(up).to_have_attribute("aria-pressed", "true")
        # Taking it back: everyone's count goes down.
        await up.click()
        await expect(last_answer(bob).locator(".fb-up")).to_have_text("")
