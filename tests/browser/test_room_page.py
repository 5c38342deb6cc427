"""The room page against a scripted WebSocket server (fakeserver.py): rendering, streaming,
safety, resume/dedupe, close codes, errors, keyboard, languages and layout. The page itself,
its templates and scripts come from the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import REPO, Browser, RoomchatServer, no_page_errors
from tests.browser.fakeserver import ME, OTHER, FakeRoomServer, source

pytestmark = pytest.mark.browser

XSS_ANSWER = (
    "Look: <script>window.__xss = 'script'</script>\n\n"
    "<img src=x onerror=\"window.__xss = 'img'\">\n\n"
    "[click me](javascript:window.__xss='link') and "
    "<a href=\"javascript:window.__xss='a'\">a</a>\n\n"
    '<iframe src="javascript:window.__xss=\'iframe\'"></iframe> <b onmouseover="x()">bold?</b>\n\n'
    "![pixel](http://tracker.invalid/p.png)"
)


async def open_room(
    browser: Browser,
    roomchat_server: RoomchatServer,
    server: FakeRoomServer,
    *,
    wait_live: bool = True,
    **page_options: Any,
) -> Any:
    page = await browser.page(**page_options)
    await server.install(page)
    await page.goto(f"{roomchat_server.url}/rooms/{server.room}/")
    if wait_live:
        await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    return page


def answer(page: Any, aid: str) -> Any:
    return page.locator(f'article.answer[data-id="{aid}"]')


async def test_history_members_and_markdown_render(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.members = [ME, OTHER]
    server.history = [
        {"id": "q1", "role": "user", "text": "What's on the menu?", "status": "complete",
         "created": "2026-11-23T09:40:00+00:00", "user": OTHER},
        {"id": "a1", "role": "assistant", "question_id": "q1", "status": "complete",
         "created": "2026-11-23T09:40:01+00:00",
         "text": "We serve **coffee** and `tea`.\n\n```python\nprint('hi')\n```\n\n"
                 "| a | b |\n|:-:|--:|\n| 1 | 2 |",
         "sources": [source(1, "Menu drinks", "Espresso, latte and green tea.")]},
        {"id": "q2", "role": "user", "text": "And <b>cake</b>?", "status": "complete",
         "created": "2026-11-23T09:41:00+00:00", "user": ME},
        {"id": "a2", "role": "assistant", "question_id": "q2", "status": "interrupted",
         "created": "2026-11-23T09:41:01+00:00", "text": "Cheesecake and",
         "error": {"code": "llm_unavailable", "message": "The model stopped answering."},
         "sources": []},
        {"id": "q3", "role": "user", "text": "stop", "status": "complete",
         "created": "2026-11-23T09:42:00+00:00", "user": ME},
        {"id": "a3", "role": "assistant", "question_id": "q3", "status": "cancelled",
         "created": "2026-11-23T09:42:01+00:00", "text": "Half an", "sources": []},
    ]  # fmt: skip
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server)
        await expect(page.locator("#empty-state")).to_be_hidden()
        q1 = page.locator("#msg-q1")
        await expect(q1.locator(".author")).to_have_text(OTHER["name"])
        await expect(q1.locator("time")).to_have_attribute("datetime", "2026-11-23T09:40:00+00:00")
        a1 = answer(page, "a1")
        await expect(a1.locator(".md strong")).to_have_text("coffee")
        await expect(a1.locator(".md pre code")).to_have_text("print('hi')\n")
        await expect(a1.locator(".code-lang")).to_have_text("python")
        await expect(a1.locator(".copy-code")).to_be_visible()
        await expect(a1.locator("td.align-right")).to_have_text("2")
        # Sources: collapsed, then opened by keyboard.
        summary = a1.locator("summary")
        await expect(summary).to_have_text("Sources (1)")
        await expect(a1.locator(".source-snippet")).to_be_hidden()
        await summary.focus()
        await page.keyboard.press("Enter")
        await expect(a1.locator(".source-title")).to_have_text("Menu drinks")
        await expect(a1.locator(".source-snippet")).to_have_text("Espresso, latte and green tea.")
        # A question is plain text, never HTML.
        await expect(page.locator("#msg-q2 .question-text")).to_have_text("And <b>cake</b>?")
        assert await page.locator("#msg-q2 b").count() == 0
        await expect(page.locator("#msg-q2")).to_have_class("msg question mine")
        # Ended badly: marked, with the error's message.
        a2 = answer(page, "a2")
        await expect(a2).to_have_attribute("data-status", "interrupted")
        await expect(a2.locator(".status-badge")).to_have_text("Interrupted")
        await expect(a2.locator(".answer-error")).to_have_text("The model stopped answering.")
        a3 = answer(page, "a3")
        await expect(a3.locator(".status-badge")).to_have_text("Stopped")
        await expect(a3.locator(".stop-btn")).to_have_count(0)
        # Members.
        await expect(page.locator("#member-list .member")).to_have_count(2)
        await expect(page.locator("#member-list")).to_contain_text(OTHER["name"])
        await expect(page.locator(".count-pill")).to_have_text("2")


async def test_answer_streams_delta_by_delta_and_the_asker_can_stop_it(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server)
        server.question("q1", "Tell me a long story", client_id="c1")
        server.answer("a1", "q1", [], sources=[source(1, "Guide", "How rooms work.")], end=False)
        a1 = answer(page, "a1")
        await expect(a1).to_have_attribute("data-status", "streaming")
        await expect(a1).to_have_attribute("aria-busy", "true")
        await expect(a1.locator(".progress-label")).to_have_text("Searching sources…")
        stop = a1.locator(".stop-btn")
        await expect(stop).to_be_visible()
        await expect(stop).to_have_attribute("aria-label", "Stop this answer")

        server.emit({"type": "answer.delta", "answer_id": "a1", "text": "Once upon"})
        await expect(a1.locator(".md")).to_have_text("Once upon")
        await expect(a1.locator(".progress-label")).to_have_text("Writing…")
        server.emit({"type": "answer.delta", "answer_id": "a1", "text": " a **time**"})
        await expect(a1.locator(".md strong")).to_have_text("time")
        # The caret is drawn after the tail's last text.
        caret = await a1.locator(".md-tail p").evaluate(
            "p => getComputedStyle(p, '::after').content"
        )
        assert caret == '""'

        await stop.click()
        cancel = await server.wait_received("cancel")
        assert cancel == {"type": "cancel", "answer_id": "a1"}
        await expect(stop).to_be_disabled()
        server.end("a1", "Once upon a **time**", status="cancelled")
        await expect(a1).to_have_attribute("data-status", "cancelled")
        await expect(a1).to_have_attribute("data-stream-check", "ok")
        await expect(a1.locator(".status-badge")).to_have_text("Stopped")
        await expect(a1.locator(".stop-btn")).to_have_count(0)
        await expect(a1).not_to_have_attribute("aria-busy", "true")
        await expect(page.locator("#announcer")).to_contain_text("Once upon a time")


async def test_no_stop_button_on_someone_elses_answer(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    server.question("q1", "Mine?", user=OTHER)
    server.answer("a1", "q1", ["Not yours"], end=False)
    await expect(answer(page, "a1").locator(".md")).to_have_text("Not yours")
    await expect(answer(page, "a1").locator(".stop-btn")).to_have_count(0)


async def test_html_and_script_in_answers_and_questions_never_run(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    server.question(
        "q1", "<img src=x onerror=\"window.__xss='question'\"><script>window.__xss=1</script>"
    )
    # Streamed in small pieces, so partial tags are rendered along the way too.
    chunks = [XSS_ANSWER[i : i + 7] for i in range(0, len(XSS_ANSWER), 7)]
    server.answer("a1", "q1", chunks, end=False)
    a1 = answer(page, "a1")
    await expect(a1.locator(".md")).to_contain_text("Look:")
    server.end("a1", XSS_ANSWER)
    await expect(a1).to_have_attribute("data-status", "complete")
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__xss") is None
    log = page.locator("#log")
    for tag in ("script", "img", "iframe", "b"):
        assert await log.locator(tag).count() == 0, tag
    assert await log.locator('a[href^="javascript"]').count() == 0
    # Shown as text instead.
    await expect(a1.locator(".md")).to_contain_text("<script>window.__xss = 'script'</script>")
    await expect(a1.locator(".md")).to_contain_text("<img src=x onerror=\"window.__xss = 'img'\">")
    await expect(page.locator("#msg-q1 .question-text")).to_contain_text(
        "<script>window.__xss=1</script>"
    )
    # Links that remain open in a new tab without access to this page.
    for link in await a1.locator(".md a").all():
        assert await link.get_attribute("rel") == "noopener noreferrer nofollow ugc"
        assert (await link.get_attribute("href") or "").startswith("http")
    # The sanitiser itself, with inputs markdown-it would never produce.
    cleaned = await page.evaluate(
        """async () => {
            const m = await import('/static/chat/js/markdown.js');
            return m.renderMarkdownToString('ok');
        }"""
    )
    assert cleaned.strip() == "<p>ok</p>"


async def test_long_fast_answer_is_rendered_once_per_frame(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    server.question("q1", "Long one")
    line = "Word " * 12 + "\n\n"
    chunks = []
    for i in range(600):
        chunks.append(f"{i}. " if i % 50 == 0 else line[:30])
        chunks.append(line[30:])
        if i % 100 == 0:
            chunks.append("```js\nconst x = 1;\n\nconst y = 2;\n```\n\n")
    server.answer("a1", "q1", chunks, end=False)
    a1 = answer(page, "a1")
    await expect(a1.locator(".md")).to_contain_text("Word")
    runs_before = await page.evaluate("window.roomchat.view.scheduler.runs")
    await page.wait_for_timeout(500)
    runs = await page.evaluate("window.roomchat.view.scheduler.runs")
    assert runs - runs_before < 60  # frames, not deltas (1200+ of them)
    server.end("a1", "".join(chunks))
    await expect(a1).to_have_attribute("data-stream-check", "ok")
    await expect(a1.locator(".md pre")).to_have_count(6)


async def test_reconnect_resumes_after_last_seq_and_shows_nothing_twice(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    server.question("q1", "Resume me")
    server.answer("a1", "q1", ["one ", "two "], end=False)
    a1 = answer(page, "a1")
    await expect(a1.locator(".md")).to_have_text("one two")
    seen = server.seq
    # The connection drops; events happen meanwhile.
    await server.current.close(code=1001)
    server.emit({"type": "answer.delta", "answer_id": "a1", "text": "three "}, deliver=False)
    await expect(page.locator("#banner")).to_be_visible()
    await expect(page.locator("#banner-text")).to_contain_text("Reconnect")
    await expect(page.locator("#send")).to_be_disabled()
    # On reconnect the page asks from its last seq; this server replays two old events too.
    server.on_connect = lambda conn: server.welcome(conn, replay_from=seen - 1)
    conn = await server.wait_connections(2)
    assert conn.after == seen
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#banner")).to_be_hidden()
    server.emit({"type": "answer.delta", "answer_id": "a1", "text": "four"})
    server.end("a1", "one two three four")
    await expect(a1).to_have_attribute("data-status", "complete")
    await expect(a1).to_have_attribute("data-stream-check", "ok")
    await expect(a1.locator(".md")).to_have_text("one two three four")
    await expect(page.locator("article.question")).to_have_count(1)
    await expect(page.locator("article.answer")).to_have_count(1)


async def test_a_gap_in_seq_resumes_from_the_last_seq_seen(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    server.question("q1", "Gap")
    server.answer("a1", "q1", ["A "], end=False)
    a1 = answer(page, "a1")
    await expect(a1.locator(".md")).to_have_text("A")
    seen = server.seq
    server.emit({"type": "answer.delta", "answer_id": "a1", "text": "B "}, deliver=False)  # lost
    server.emit({"type": "answer.delta", "answer_id": "a1", "text": "C"})  # seq jumps
    conn = await server.wait_connections(2)
    assert conn.after == seen
    server.end("a1", "A B C")
    await expect(a1.locator(".md")).to_have_text("A B C")
    await expect(a1).to_have_attribute("data-stream-check", "ok")


async def test_room_events_of_unknown_types_move_the_cursor_and_room_updated_shows(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    """A newer server's room events: skipped, not taken for a gap; `room.updated` changes the
    header and the document's title."""
    server = FakeRoomServer()
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server)
        server.question("q1", "Before")
        server.emit({"type": "something.new", "whatever": True})
        server.emit(
            {
                "type": "room.updated",
                "room": {
                    "title": "새 이름 · New name",
                    "description": "Menus",
                    "visibility": "private",
                    "allow_guests": False,
                    "assistant_name": "bori",
                    "model": "",
                },
            }
        )
        server.question("q2", "After")
        await expect(page.locator("#msg-q2")).to_be_visible()
        await expect(page.locator("#room-title")).to_have_text("새 이름 · New name")
        await expect(page.locator("#room-description")).to_have_text("Menus")
        await expect(page.locator("#room-private")).to_be_visible()
        await expect(page.locator(".notice-info")).to_contain_text("settings changed")
        assert await page.title() == "새 이름 · New name · #lobby · Roomchat"
        await asyncio.sleep(0.3)
        assert len(server.connections) == 1  # no resync: nothing was missing


async def test_welcome_not_resumed_rebuilds_the_view(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    server.question("q1", "Old question")
    await expect(page.locator("#msg-q1")).to_be_visible()
    # The server lost its log: the resume gets a full welcome with what the room holds now.
    server.history = [
        {"id": "q9", "role": "user", "text": "Kept question", "status": "complete",
         "created": "2026-11-23T09:50:00+00:00", "user": OTHER},
        {"id": "a9", "role": "assistant", "question_id": "q9", "status": "streaming",
         "text": "Half", "created": "2026-11-23T09:50:01+00:00", "sources": []},
    ]  # fmt: skip
    server.on_connect = lambda conn: conn.send(
        server._welcome(seq=40, resumed=False, history=server.history)
    )
    await server.current.close(code=1012)
    await server.wait_connections(2)
    await expect(page.locator("#msg-q9")).to_be_visible()
    await expect(page.locator("#msg-q1")).to_have_count(0)
    a9 = answer(page, "a9")
    await expect(a9).to_have_attribute("data-status", "streaming")
    server.current.send({"type": "answer.delta", "seq": 41, "answer_id": "a9", "text": " done"})
    server.current.send(
        {
            "type": "answer.end",
            "seq": 42,
            "answer_id": "a9",
            "status": "complete",
            "text": "Half done",
        }
    )
    await expect(a9.locator(".md")).to_have_text("Half done")
    await expect(a9).to_have_attribute("data-stream-check", "ok")


async def test_close_4004_shows_an_error_and_does_not_retry(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    await server.current.close(code=4004, reason="bad room")
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "error")
    await expect(page.locator("#banner-text")).to_have_text(
        "This room cannot be opened: its name is not valid."
    )
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "closed")
    await expect(page.locator("#question")).to_be_disabled()
    await page.wait_for_timeout(1500)
    assert len(server.connections) == 1


async def test_moderators_remove_messages_and_people_and_may_stop_any_answer(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.access = {"role": "moderator", "moderate": True, "configure": False}
    server.members = [ME, OTHER]
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server)
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        server.message("m1", "the door code is 4711", user=OTHER)
        server.question("q1", "what is the code?", user=OTHER)
        server.answer("a1", "q1", ["It is ", "4711"], end=False)
        await expect(answer(page, "a1").locator(".stop-btn")).to_be_visible()

        await page.locator("#msg-m1 .mod-redact").click()
        assert await server.wait_received("redact") == {"type": "redact", "id": "m1"}
        server.emit({"type": "message.redacted", "id": "m1"})
        await expect(page.locator("#msg-m1 .redacted-note")).to_have_text("Removed by a moderator")
        await expect(page.locator("#msg-m1")).not_to_contain_text("4711")
        await expect(page.locator("#msg-m1 .mod-redact")).to_have_count(0)

        # An answer redacted while being written: its later deltas come as repeats of the
        # redaction, and its end without text.
        server.emit({"type": "message.redacted", "id": "a1"})
        server.emit({"type": "message.redacted", "id": "a1"})
        server.emit(
            {
                "type": "answer.end",
                "answer_id": "a1",
                "status": "cancelled",
                "text": "",
                "redacted": True,
            }
        )
        await expect(answer(page, "a1")).to_have_attribute("data-status", "cancelled")
        await expect(answer(page, "a1")).not_to_contain_text("4711")
        await expect(answer(page, "a1").locator(".redacted-note")).to_be_visible()

        await page.locator("#member-list .mod-remove").click()
        assert await server.wait_received("remove") == {"type": "remove", "user_id": OTHER["id"]}
        # The history of a full welcome shows what was redacted the same way.
        server.history = [
            {
                "id": "m2",
                "role": "message",
                "user": OTHER,
                "text": "",
                "status": "complete",
                "created": "2026-11-23T09:41:00+00:00",
                "redacted": True,
            },
        ]
        await server.current.close(code=4003, reason="access changed")
        conn = await server.wait_connections(2, timeout=3)
        assert conn.after is None  # a full welcome: new rights, new controls
        await expect(page.locator("#msg-m2 .redacted-note")).to_be_visible()


async def test_the_owner_names_and_demotes_moderators_from_the_member_list(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.access = {"role": "owner", "moderate": True, "configure": True}
    mod = {"id": "u:8", "name": "Joon", "role": "moderator"}
    server.members = [{**ME, "role": "owner"}, mod, OTHER]
    page = await open_room(browser, roomchat_server, server, locale="ko-KR")
    joon = page.locator("#member-list .member", has_text="Joon")
    await expect(joon.locator(".role-tag")).to_have_text("운영자")
    await joon.locator(".mod-role").click()
    assert await server.wait_received("set_role") == {
        "type": "set_role",
        "user_id": "u:8",
        "role": "member",
    }
    minji = page.locator("#member-list .member", has_text=OTHER["name"])
    await expect(minji.locator(".mod-role")).to_have_text("운영자로 지정")


async def test_someone_without_moderation_rights_gets_no_moderation_controls(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.access = {"role": "member", "moderate": False, "configure": False}
    server.members = [ME, OTHER]
    page = await open_room(browser, roomchat_server, server)
    server.message("m1", "hello", user=OTHER)
    server.question("q1", "a question", user=OTHER)
    server.answer("a1", "q1", ["Hi"], end=False)
    await expect(answer(page, "a1")).to_be_visible()
    await expect(page.locator(".mod-redact")).to_have_count(0)
    await expect(page.locator(".mod-remove")).to_have_count(0)
    await expect(answer(page, "a1").locator(".stop-btn")).to_have_count(0)


async def test_removed_from_the_room_the_page_says_so_and_stops(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server, locale="ko-KR")

    async def refuse(conn: Any) -> None:
        await conn.close(code=1000, reason="refused")

    server.on_connect = lambda conn: asyncio.ensure_future(refuse(conn))
    await server.current.close(code=4003, reason="removed")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "closed")
    await expect(page.locator("#banner-text")).to_have_text("이 방에 더 이상 들어올 수 없습니다.")
    await page.wait_for_timeout(1500)
    assert len(server.connections) == 2  # one try to come back, then no more


async def test_close_4008_reconnects_at_once_with_after(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    server.question("q1", "x")
    await expect(page.locator("#msg-q1")).to_be_visible()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.current.close(code=4008, reason="too slow")
    conn = await server.wait_connections(2, timeout=2)
    assert loop.time() - started < 1.0
    assert conn.after == 1


async def test_close_1008_is_shown_and_backs_off(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    await server.current.close(code=1008, reason="flooding")
    await expect(page.locator(".notice")).to_contain_text("too many messages")
    await expect(page.locator("#banner-text")).to_contain_text("Reconnecting in")
    delay = await page.evaluate("window.roomchat.client.closeInfo.delayMs")
    assert delay >= 5000
    await page.click("#banner-retry")
    await server.wait_connections(2, timeout=3)
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")


async def test_error_notices_are_dismissable_and_rate_limit_shows_retry_after(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    await page.fill("#question", "hello")
    await page.keyboard.press("Enter")
    ask = await server.wait_received("say")
    await expect(page.locator("#question")).to_have_value("")
    server.send({"type": "error", "code": "rate_limited", "message": "slow down", "retry_after": 7})
    notice = page.locator('.notice[data-code="rate_limited"]')
    await expect(notice).to_contain_text("Try again in 7 s")
    # The refused message goes back into the box, and sending waits for retry_after.
    await expect(page.locator("#question")).to_have_value(ask["text"])
    await expect(page.locator("#send")).to_be_disabled()
    await page.keyboard.press("Escape")
    await expect(notice).to_have_count(0)
    server.send({"type": "error", "code": "not_found", "message": "no such answer"})
    other = page.locator('.notice[data-code="not_found"]')
    await expect(other).to_contain_text("no longer exists")
    await other.locator(".notice-close").click()
    await expect(other).to_have_count(0)


async def test_composer_keys_limit_and_ime(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    box = page.locator("#question")
    await expect(box).to_be_focused()
    await box.type("line one")
    await page.keyboard.press("Shift+Enter")
    await box.type("line two")
    await expect(box).to_have_value("line one\nline two")
    # An Enter that commits an IME composition (Hangul) does not send.
    await box.evaluate(
        "b => b.dispatchEvent(new KeyboardEvent('keydown',"
        " {key: 'Enter', isComposing: true, bubbles: true, cancelable: true}))"
    )
    await page.wait_for_timeout(100)
    assert not any(f["type"] in ("ask", "say") for f in server.current.received)
    await page.keyboard.press("Enter")
    said = await server.wait_received("say")
    assert said["text"] == "line one\nline two"
    assert 0 < len(said["client_id"]) <= 64
    # The limit (settings.CHAT_MAX_MESSAGE_CHARS) is shown and enforced.
    await expect(page.locator("#char-count")).to_have_text("0 / 4000")
    await box.fill("가" * 4001)
    await expect(page.locator("#char-count")).to_have_text("1 characters over the limit of 4000")
    await expect(page.locator("#send")).to_be_disabled()
    await box.fill("")
    await expect(page.locator("#send")).to_be_disabled()


async def test_messages_and_questions_sent_before_a_drop_are_sent_again_with_their_client_ids(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    await page.fill("#question", "Did this arrive?")
    await page.keyboard.press("Enter")
    first = await server.wait_received("say")
    await page.fill("#question", "@assistant And this?")
    await page.keyboard.press("Enter")
    question = await server.wait_received("ask")
    await server.current.close(code=1001)
    conn = await server.wait_connections(2)
    assert await server.wait_received("say", conn=conn) == first
    assert await server.wait_received("ask", conn=conn) == question


async def test_messages_are_chat_bubbles_apart_from_questions_and_never_html(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.members = [ME, OTHER]
    server.history = [
        {"id": "m1", "role": "message", "text": "케이크 가져올게요", "status": "complete",
         "created": "2026-11-23T09:40:00+00:00", "user": OTHER},
        {"id": "m2", "role": "message", "text": "Thanks!", "status": "complete",
         "created": "2026-11-23T09:40:30+00:00", "user": ME, "client_id": "c1"},
        {"id": "q1", "role": "user", "text": "What cakes are there?", "status": "complete",
         "created": "2026-11-23T09:41:00+00:00", "user": ME},
    ]  # fmt: skip
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server)
        m1 = page.locator("#msg-m1")
        await expect(m1).to_have_class("msg said")
        await expect(m1.locator(".author")).to_have_text(OTHER["name"])
        await expect(m1.locator(".said-text")).to_have_text("케이크 가져올게요")
        await expect(page.locator("#msg-m2")).to_have_class("msg said mine")
        # A question says it was for the assistant; a message does not.
        await expect(page.locator("#msg-q1 .ask-tag")).to_have_text("asked the assistant")
        await expect(page.locator(".said .ask-tag")).to_have_count(0)
        # A live message: plain text, whatever it holds.
        payload = "<img src=x onerror=\"window.__xss='said'\"><script>window.__xss=1</script>"
        server.message("m3", payload, user=OTHER)
        await expect(page.locator("#msg-m3 .said-text")).to_have_text(payload)
        assert await page.locator("#log img, #log script").count() == 0
        assert await page.evaluate("window.__xss") is None
        # Nothing waits for an answer after a message.
        await expect(page.locator("article.answer")).to_have_count(0)


async def test_the_composer_says_unless_the_assistant_is_mentioned_or_asked(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    box = page.locator("#question")

    async def last_sent() -> tuple[str, str]:
        for _ in range(100):
            frames = [
                f for c in server.connections for f in c.received if f["type"] in ("ask", "say")
            ]
            if len(frames) > len(seen):
                seen.extend(frames[len(seen) :])
                return seen[-1]["type"], seen[-1]["text"]
            await page.wait_for_timeout(20)
        raise AssertionError("nothing was sent")

    seen: list[dict[str, Any]] = []
    cases = [
        ("Hello everyone", "Enter", ("say", "Hello everyone")),
        ("@assistant What's on the menu?", "Enter", ("ask", "What's on the menu?")),
        ("@Assistant, any cake?", "Enter", ("ask", "any cake?")),
        ("@비서 라떼 얼마예요?", "Enter", ("ask", "라떼 얼마예요?")),
        ("@비서님 영업시간은요?", "Enter", ("ask", "영업시간은요?")),
        ("@assistants are great", "Enter", ("say", "@assistants are great")),
        ("email me @ home", "Enter", ("say", "email me @ home")),
        ("Opening hours?", "Control+Enter", ("ask", "Opening hours?")),
    ]
    for text, key, expected in cases:
        await box.fill(text)
        if key == "Enter":  # the composer shows what Enter will do
            await expect(page.locator("#composer")).to_have_attribute("data-mode", expected[0])
        await page.keyboard.press(key)
        await expect(box).to_have_value("")
        assert await last_sent() == expected, text
    # The button next to Send asks too.
    await box.fill("Do you have decaf?")
    await page.locator("#ask-ai").click()
    assert await last_sent() == ("ask", "Do you have decaf?")
    # A mention alone is nothing to ask.
    await box.fill("@assistant")
    await expect(page.locator("#send")).to_be_disabled()
    await expect(page.locator("#ask-ai")).to_be_disabled()
    # The room's own name for its assistant works as well (the page reads it from its config).
    asks = await page.evaluate(
        "import('/static/chat/js/room.js').then(m => ["
        " m.mentionedQuestion('@빵집봇 식빵 있어요?', ['빵집봇', 'assistant']),"
        " m.mentionedQuestion('@빵집봇이 좋아', ['빵집봇', 'assistant'])])"
    )
    assert asks == ["식빵 있어요?", None]


async def test_typing_shows_who_is_typing_and_the_page_tells_the_room_while_typing(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.members = [ME, OTHER]
    page = await open_room(browser, roomchat_server, server)
    typing = page.locator("#typing")
    await expect(typing).to_be_hidden()
    server.send({"type": "typing", "user": ME})  # ourselves (another tab): not shown
    server.send({"type": "typing", "user": OTHER})
    await expect(typing).to_be_visible()
    await expect(typing).to_have_text(f"{OTHER['name']} is typing…")
    sam = {"id": "u:9", "name": "Sam"}
    server.send({"type": "typing", "user": sam})
    await expect(typing).to_have_text(f"{OTHER['name']} and Sam are typing…")
    # Their message ends their "typing"; the other one's goes by itself after a few seconds.
    server.message("m1", "here it is", user=OTHER)
    await expect(typing).to_have_text("Sam is typing…")
    await expect(typing).to_be_hidden(timeout=8000)
    # Typing in the box tells the room, at most once every few seconds.
    await page.locator("#question").press_sequentially("hello there", delay=30)
    await server.wait_received("typing")
    await page.wait_for_timeout(500)
    assert len(server.received("typing")) == 1
    # Korean.
    await page.locator(".room-header [data-lang-toggle]").click()
    server.send({"type": "typing", "user": sam})
    await expect(typing).to_have_text("Sam님이 입력 중…")


async def test_korean_ui_and_language_toggle(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server, locale="ko-KR")
    assert await page.evaluate("document.documentElement.lang") == "ko"
    await expect(page.locator("#question")).to_have_attribute("placeholder", "메시지 또는 @비서…")
    await expect(page.locator("#conn-label")).to_have_text("연결됨")
    server.question("q1", "안녕하세요", user=OTHER)
    server.answer("a1", "q1", ["답변"], end=False)
    await expect(answer(page, "a1").locator(".author")).to_have_text("어시스턴트")
    toggle = page.locator(".room-header [data-lang-toggle]")
    await expect(toggle).to_have_text("English")
    await toggle.click()
    await expect(page.locator("#question")).to_have_attribute(
        "placeholder", "Message, or @assistant…"
    )
    await expect(answer(page, "a1").locator(".author")).to_have_text("Assistant")
    await page.reload()
    await expect(page.locator("#conn-label")).to_have_text("Live")  # the choice is kept
    word_break = await page.evaluate("getComputedStyle(document.body).wordBreak")
    assert word_break == "keep-all"


async def test_a_rewritten_follow_up_shows_what_was_searched_in_both_languages(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    with no_page_errors(browser):
        page = await open_room(browser, roomchat_server, server, locale="ko-KR")
        server.question("q1", "그거 아이스로도 돼요?", user=OTHER)
        query = "라떼 아이스 <b>주문</b>"
        server.answer(
            "a1", "q1", ["네."], sources=[source(1, "Drinks", "Hot or iced.")], query=query
        )
        note = answer(page, "a1").locator(".sources-query")
        await expect(note).to_have_text(f"검색한 내용: {query}")  # text, never markup
        await page.locator(".room-header [data-lang-toggle]").click()
        await expect(note).to_have_text(f"Searched for: {query}")
        # Nothing matched: the query is still shown; a question searched as asked shows none.
        server.question("q2", "그럼 두유는요?", user=OTHER)
        server.answer("a2", "q2", ["없어요."], sources=[], query="라떼 두유")
        await expect(answer(page, "a2").locator(".sources-query")).to_have_text(
            "Searched for: 라떼 두유"
        )
        server.question("q3", "How late are you open?", user=OTHER)
        server.answer("a3", "q3", ["Until nine."], sources=[source(2, "Hours", "8 to 21.")])
        await expect(answer(page, "a3")).to_have_attribute("data-status", "complete")
        await expect(answer(page, "a3").locator(".sources-query")).to_have_count(0)
        # A moderator redacts q2: "searched for" held its words and goes; its answer stays.
        server.emit({"type": "message.redacted", "id": "q2"})
        await expect(page.locator("#msg-q2 .redacted-note")).to_be_visible()
        await expect(answer(page, "a2").locator(".sources-query")).to_have_count(0)
        await expect(answer(page, "a2")).to_contain_text("없어요.")
        await expect(note).to_have_text(f"Searched for: {query}")  # another question's stays


async def test_auto_scroll_follows_only_at_the_bottom(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server, height=600)
    for i in range(8):
        server.question(f"q{i}", f"Question {i}")
        server.answer(f"a{i}", f"q{i}", ["Paragraph.\n\n" * 6])
    await expect(answer(page, "a7")).to_have_attribute("data-status", "complete")
    gap = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    scroller = page.locator("#log-scroll")
    assert await scroller.evaluate(gap) < 5
    server.question("q8", "Streaming")
    server.answer("a8", "q8", ["Line\n\n"] * 10, end=False)
    await expect(answer(page, "a8").locator(".md p")).to_have_count(10)
    await page.wait_for_timeout(100)
    assert await scroller.evaluate(gap) < 5  # followed
    await scroller.evaluate("el => el.scrollTo({top: 0, behavior: 'instant'})")
    await page.wait_for_timeout(100)
    server.emit({"type": "answer.delta", "answer_id": "a8", "text": "More\n\n" * 10})
    await expect(page.locator("#jump-latest")).to_be_visible()
    assert await scroller.evaluate("el => el.scrollTop") == 0  # left alone
    await page.click("#jump-latest")  # a smooth scroll
    await page.wait_for_function(
        "() => { const el = document.getElementById('log-scroll');"
        " return el.scrollHeight - el.scrollTop - el.clientHeight < 5; }",
        timeout=5000,
    )
    await expect(page.locator("#jump-latest")).to_be_hidden()


async def test_phone_layout_members_drawer_and_escape(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    server.members = [ME, OTHER]
    page = await open_room(browser, roomchat_server, server, width=390, height=844, has_touch=True)
    members = page.locator("#members")
    toggle = page.locator("#members-toggle")
    await expect(members).to_be_hidden()
    await expect(toggle).to_have_attribute("aria-label", "People in this room: 2")
    await toggle.click()
    await expect(members).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(page.locator("#members-close")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(members).to_be_hidden()
    await expect(toggle).to_be_focused()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways


async def test_keyboard_tab_order_reaches_the_controls(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = FakeRoomServer()
    page = await open_room(browser, roomchat_server, server)
    skip = page.locator(".skip-link")
    await skip.focus()
    await expect(skip).to_be_in_viewport()  # shown when focused
    order = ["skip-link"]
    outlines = []
    for _ in range(6):
        await page.keyboard.press("Tab")
        order.append(
            await page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.id || e.className || e.tagName })()"
            )
        )
        outlines.append(
            await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        )
    assert order[0] == "skip-link"
    assert order.index("log-scroll") < order.index("question")
    # Every control reached by Tab shows a focus ring.
    assert all(style != "none" for style in outlines[: order.index("question") - 1]), (
        order,
        outlines,
    )


# --- screenshots for the README -------------------------------------------------------------

SHOT_QUESTION = "How late are you open on weekends, and can I bring my laptop?"
SHOT_ANSWER = (
    "On **weekends** the café is open **9:00\u201322:00** (Friday until 23:00).\n\n"
    "Laptops are welcome. A few things to know:\n\n"
    "- Power outlets are along the window bar.\n"
    "- Wi-Fi: network `cafe-guest`, the password is on your receipt.\n"
    "- The back room is *quiet* from 18:00.\n\n"
    "```bash\ncurl http://cafe.local/hours?day=sat\n```\n\n"
    "Anything else you'd like to know?"
)
SHOT_KO_QUESTION = "주말에는 몇 시까지 열어요? 노트북을 가져가도 되나요?"
SHOT_KO_ANSWER = (
    "**주말** 영업시간은 **오전 9시부터 오후 10시**까지입니다(금요일은 오후 11시까지).\n\n"
    "노트북은 언제든 환영합니다.\n\n"
    "- 콘센트는 창가 바 좌석에 있습니다.\n"
    "- 와이파이: `cafe-guest`, 비밀번호는 영수증에 있어요.\n"
    "- 안쪽 방은 오후 6시부터 *조용한 공간*입니다.\n\n"
    "더 궁금한 점이 있으신가요?"
)


def _shot_room(server: FakeRoomServer, *, korean: bool) -> None:
    other = OTHER if korean else {"id": "u:7", "name": "Minji Kim"}
    third = {"id": "u:9", "name": "Sam Lee"}
    server.members = [ME, other, third]
    hours = "Monday to Thursday 8:00\u201321:00; Friday 8:00\u201323:00; weekends 9:00\u201322:00."
    laptops = "Laptops are welcome at all tables. The back room is a quiet zone after 18:00."
    sources = [
        source(1, "Hours and location", hours),
        source(2, "Cafe policies", laptops),
    ]  # fmt: skip
    server.history = [
        {"id": "q1", "role": "user", "text": SHOT_KO_QUESTION if korean else SHOT_QUESTION,
         "status": "complete", "created": "2026-11-23T09:40:00+00:00", "user": other},
        {"id": "a1", "role": "assistant", "question_id": "q1", "status": "complete",
         "created": "2026-11-23T09:40:01+00:00", "text": SHOT_KO_ANSWER if korean else SHOT_ANSWER,
         "sources": sources},
        {"id": "m1", "role": "message", "status": "complete", "user": third,
         "created": "2026-11-23T09:40:40+00:00",
         "text": "토요일 오후에 안쪽 방에서 모여요!" if korean else "Back room on Saturday?"},
        {"id": "m2", "role": "message", "status": "complete", "user": other,
         "created": "2026-11-23T09:40:50+00:00",
         "text": "좋아요!" if korean else "Sounds good!"},
    ]  # fmt: skip


async def test_screenshots(browser: Browser, roomchat_server: RoomchatServer) -> None:
    out = REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for korean, path, size in (
        (False, out / "room-desktop.png", {"width": 1280, "height": 800}),
        (True, out / "room-phone.png", {"width": 390, "height": 844}),
    ):
        server = FakeRoomServer(room="cafe")
        _shot_room(server, korean=korean)
        page = await open_room(
            browser, roomchat_server, server, locale="ko-KR" if korean else "en-US",
            device_scale_factor=2 if korean else 1, **size,
        )  # fmt: skip
        text = "주말 브런치 메뉴도 있나요?" if korean else "Do you serve brunch on Sundays?"
        server.question("q2", text, client_id="c2")
        brunch = source(
            3,
            "Seasonal menu",
            "Sunday brunch 10:00\u201314:00: pancakes, shakshuka, granola bowls.",
        )
        server.answer("a2", "q2", [], sources=[brunch], end=False)
        partial = (
            "네, **일요일 브런치**는 오전 10시부터 오후 2시까지 제공됩니다. 인기 메뉴는"
            if korean
            else "Yes: **Sunday brunch** runs from 10:00 to 14:00. The most popular dishes are"
        )
        server.emit({"type": "answer.delta", "answer_id": "a2", "text": partial})
        await expect(answer(page, "a2").locator(".md")).to_contain_text(partial[-10:])
        server.send({"type": "typing", "user": server.members[2]})
        await expect(page.locator("#typing")).to_be_visible()
        await page.evaluate("window.roomchat.view.scrollToBottom(false)")
        await page.evaluate("document.activeElement.blur()")
        await page.wait_for_timeout(400)
        await page.screenshot(path=str(path), animations="disabled")
        await page.context.close()
