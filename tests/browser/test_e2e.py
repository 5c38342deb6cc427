"""End to end: real pages against the real server (daphne + consumer + answer runner + the LLM
simulator). Rooms are unique per test so tests do not see each other's answers."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from playwright.async_api import expect

from llmsim.text import simulated_text
from tests.browser.conftest import TEST_USER, Browser, RoomchatServer, no_page_errors

pytestmark = pytest.mark.browser


def new_room() -> str:
    return f"e2e-{secrets.token_hex(4)}"


async def open_live(browser: Browser, server: RoomchatServer, room: str, **options: Any) -> Any:
    page = await browser.page(**options)
    await page.goto(f"{server.url}/rooms/{room}/")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    return page


async def ask(page: Any, text: str) -> None:
    """Ask the assistant with the button next to Send (Enter alone talks to the people)."""
    await page.fill("#question", text)
    await page.locator("#ask-ai").click()
    await expect(page.locator("#question")).to_have_value("")


def last_answer(page: Any) -> Any:
    return page.locator("article.answer").last


async def answer_text(page: Any) -> str:
    return (await last_answer(page).locator(".md").inner_text()).strip()


async def test_two_pages_in_a_room_see_the_same_streamed_answer(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    room = new_room()
    with no_page_errors(browser):
        alice = await open_live(browser, roomchat_server, room)
        bob = await open_live(browser, roomchat_server, room, locale="ko-KR")
        await expect(alice.locator("#member-list .member")).to_have_count(2)
        await ask(alice, "When are you open? [[sim tokens=60 tps=30]]")

        # Bob watches it being written: streaming, with partial text, then complete.
        bob_answer = last_answer(bob)
        # The first answer of a fresh server also loads the embedding model: allow for it.
        await expect(bob_answer).to_have_attribute("data-status", "streaming", timeout=30000)
        await expect(bob_answer.locator(".md")).not_to_be_empty(timeout=30000)
        partial = await answer_text(bob)
        assert 0 < len(partial) < len(simulated_text(60).strip())
        await expect(last_answer(alice).locator(".stop-btn")).to_be_visible()
        await expect(bob_answer.locator(".stop-btn")).to_have_count(0)

        expected = simulated_text(60).strip()
        for page in (alice, bob):
            done = last_answer(page)
            await expect(done).to_have_attribute("data-status", "complete", timeout=30000)
            await expect(done).to_have_attribute("data-stream-check", "ok")
            assert await answer_text(page) == expected
            await expect(page.locator("article.question")).to_have_count(1)
            await expect(page.locator("article.question .question-text")).to_have_text(
                "When are you open? [[sim tokens=60 tps=30]]"
            )
            # Grounded: the knowledge base's sources under the answer.
            await expect(done.locator(".sources summary")).to_be_visible()
        await expect(
            bob.locator("#msg-" + await last_answer(alice).get_attribute("data-id"))
        ).to_be_visible()


async def test_two_people_talk_and_one_calls_the_assistant_with_a_mention(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    room = new_room()
    with no_page_errors(browser):
        alice = await open_live(browser, roomchat_server, room)
        bob = await open_live(browser, roomchat_server, room, locale="ko-KR")
        alice_name = await alice.locator("#me-chip").inner_text()
        bob_name = await bob.locator("#me-chip").inner_text()
        # Bob types: Alice sees it (across the real server).
        await bob.locator("#question").press_sequentially("안녕", delay=40)
        await expect(alice.locator("#typing")).to_have_text(f"{bob_name} is typing…")
        await bob.locator("#question").fill("")
        # Alice says something: a chat bubble for both, and no answer.
        await alice.fill("#question", "I'll bring the cake on Friday")
        await alice.keyboard.press("Enter")
        for page in (alice, bob):
            said = page.locator("article.said").last
            await expect(said.locator(".said-text")).to_have_text("I'll bring the cake on Friday")
            await expect(said.locator(".author")).to_have_text(alice_name)
        await expect(alice.locator("article.said.mine")).to_have_count(1)
        # Bob calls the assistant with a mention: a question without it, answered for both.
        await bob.fill("#question", "@비서 What did they say? [[sim tokens=8 tps=0]]")
        await bob.keyboard.press("Enter")
        for page in (alice, bob):
            question = page.locator("article.question").last
            await expect(question.locator(".question-text")).to_have_text(
                "What did they say? [[sim tokens=8 tps=0]]"
            )
            await expect(question.locator(".author")).to_have_text(bob_name)
            done = last_answer(page)
            await expect(done).to_have_attribute("data-status", "complete", timeout=30000)
            await expect(page.locator("article.answer")).to_have_count(1)
        # After a reload the conversation is all there, in order.
        await alice.reload()
        await expect(alice.locator("#conn-status")).to_have_attribute("data-state", "live")
        kinds = await alice.locator("#log article").evaluate_all(
            "nodes => nodes.map(n => n.classList[1])"
        )
        assert kinds == ["said", "question", "answer"]


async def test_stop_ends_the_answer_cancelled_for_everyone(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    room = new_room()
    alice = await open_live(browser, roomchat_server, room)
    bob = await open_live(browser, roomchat_server, room)
    await ask(alice, "Tell me everything [[sim tokens=400 tps=20]]")
    mine = last_answer(alice)
    await expect(mine.locator(".md")).not_to_be_empty(timeout=30000)
    await mine.locator(".stop-btn").click()
    for page in (alice, bob):
        done = last_answer(page)
        await expect(done).to_have_attribute("data-status", "cancelled", timeout=10000)
        await expect(done.locator(".status-badge")).to_have_text("Stopped")
        await expect(done.locator(".stop-btn")).to_have_count(0)
    assert len(await answer_text(alice)) < len(simulated_text(400).strip())


async def test_reconnect_mid_answer_shows_the_whole_answer_exactly_once(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    room = new_room()
    page = await open_live(browser, roomchat_server, room)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await ask(page, "Keep going [[sim tokens=150 tps=30]]")
    await page.wait_for_function(
        "() => { const a = document.querySelector('article.answer .md');"
        " return a && a.textContent.length > 40; }",
        timeout=30000,
    )
    # The socket drops in the middle of the answer.
    await page.evaluate("window.roomchat.client.ws.close()")
    await expect(page.locator("#conn-status")).not_to_have_attribute("data-state", "live")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    assert len(sockets) == 1 and "after=" in sockets[0], sockets
    done = last_answer(page)
    await expect(done).to_have_attribute("data-status", "complete", timeout=30000)
    await expect(done).to_have_attribute("data-stream-check", "ok")
    assert await answer_text(page) == simulated_text(150).strip()
    await expect(page.locator("article.question")).to_have_count(1)
    await expect(page.locator("article.answer")).to_have_count(1)


async def test_markup_in_questions_and_echoed_answers_is_text_and_never_runs(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    room = new_room()
    payload = "<img src=x onerror=\"window.__xss='img'\"> <script>window.__xss='script'</script>"
    alice = await open_live(browser, roomchat_server, room)
    bob = await open_live(browser, roomchat_server, room)
    # The simulator echoes the question's first words (after its asker's name, as the prompt
    # carries it) at the start of the answer.
    await ask(alice, f"{payload} [[sim echo=true tokens=12 tps=40]]")
    name = await alice.locator("#me-chip").inner_text()
    for page in (alice, bob):
        done = last_answer(page)
        await expect(done).to_have_attribute("data-status", "complete", timeout=30000)
        assert (await answer_text(page)).startswith(f"{name}: <img src=x onerror=")
        await expect(page.locator("article.question .question-text")).to_contain_text(payload)
        for tag in ("img", "script"):
            assert await page.locator(f"#log {tag}").count() == 0, tag
        assert await page.evaluate("window.__xss") is None


async def test_guest_identity_is_kept_by_the_session(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    room = new_room()
    page = await open_live(browser, roomchat_server, room)
    name = await page.locator("#me-chip").inner_text()
    assert name
    await ask(page, "Who am I? [[sim tokens=3]]")
    await expect(page.locator("article.question .author")).to_have_text(name)
    await page.reload()
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#me-chip")).to_have_text(name)
    # The history shows the question as mine, with a Stop button only while it streams.
    await expect(page.locator("article.question.mine")).to_have_count(1)


async def test_home_enter_room_guest_login_and_logout(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    room = new_room()
    page = await browser.page()
    await page.goto(roomchat_server.url + "/")
    # A bad name is refused on the page with a clear message.
    await page.fill("#room-name", "not ok!")
    await page.keyboard.press("Enter")
    await expect(page.locator("#room-error")).to_be_visible()
    await expect(page.locator("#room-error")).to_contain_text("letters A\u2013Z")
    assert page.url == roomchat_server.url + "/"
    # Continue as guest.
    await page.get_by_role("button", name="Continue as guest").click()
    await expect(page.locator(".account .identity")).to_contain_text("Guest ·")
    # A good name enters the room. A visit alone stores nothing; once something is said
    # there, the room is listed as recent.
    await page.fill("#room-name", room)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/rooms/{room}/")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    await page.goto(roomchat_server.url + "/")
    await expect(page.locator("body")).not_to_contain_text(room)
    await page.goto(f"{roomchat_server.url}/rooms/{room}/")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    await ask(page, "Hello [[sim tokens=3 tps=0]]")
    await expect(last_answer(page)).to_have_attribute("data-status", "complete", timeout=30000)
    await page.goto(roomchat_server.url + "/")
    await expect(page.locator(".room-list")).to_contain_text(room)
    # Log in (Django's LoginView), then out again (POST).
    await page.get_by_role("link", name="Log in").first.click()
    await page.fill("#id_username", TEST_USER[0])
    await page.fill("#id_password", TEST_USER[1])
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator(".account .identity")).to_contain_text(f"Signed in as {TEST_USER[0]}")
    await page.goto(f"{roomchat_server.url}/rooms/{room}/")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#me-chip")).to_have_text(TEST_USER[0])
    await page.goto(roomchat_server.url + "/")
    await page.locator(".account").get_by_role("button", name="Log out").click()
    await expect(page.locator(".account")).to_contain_text("You are not signed in.")


async def test_a_moderator_redacts_a_message_and_removes_someone_from_the_page(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    """Staff moderate every room: Alice (staff, signed in) removes what a guest said, then the
    guest; the guest's page says so and does not come back."""
    room = new_room()
    with no_page_errors(browser):
        alice = await browser.page()
        await alice.goto(f"{roomchat_server.url}/accounts/login/?next=/rooms/{room}/")
        await alice.fill("#id_username", TEST_USER[0])
        await alice.fill("#id_password", TEST_USER[1])
        await alice.get_by_role("button", name="Log in").click()
        await expect(alice.locator("#conn-status")).to_have_attribute("data-state", "live")
        alice.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        guest = await open_live(browser, roomchat_server, room, locale="ko-KR")
        await guest.fill("#question", "문 비밀번호는 4711이에요")
        await guest.keyboard.press("Enter")
        said = alice.locator("article.said").last
        await expect(said.locator(".said-text")).to_have_text("문 비밀번호는 4711이에요")
        await said.locator(".mod-redact").click()
        for page, note in (
            (alice, "Removed by a moderator"),
            (guest, "운영자가 삭제한 메시지입니다"),
        ):
            await expect(page.locator("article.said.redacted .redacted-note")).to_have_text(note)
            await expect(page.locator("#log")).not_to_contain_text("4711")
        # After a reload the words are still gone (the room log and the database).
        await guest.reload()
        await expect(guest.locator("#conn-status")).to_have_attribute("data-state", "live")
        await expect(guest.locator("article.said.redacted")).to_have_count(1)
        await expect(guest.locator("#log")).not_to_contain_text("4711")

    # (Out of the no-errors block: the browser logs the refused handshake of the guest's one
    # try to come back, which is the point.)
    await expect(alice.locator("#member-list .member")).to_have_count(2)
    await alice.locator("#member-list .mod-remove").click()
    await expect(guest.locator("#banner-text")).to_have_text("이 방에 더 이상 들어올 수 없습니다.")
    await expect(guest.locator("#conn-status")).to_have_attribute("data-state", "closed")
    await expect(alice.locator("#member-list .member")).to_have_count(1)


async def test_continue_regenerate_switch_versions_and_edit_from_the_page(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    """The asker continues a failed answer (everyone sees one answer grow again), regenerates it
    (2 / 2, then 3 / 3, with arrows to switch), and edits the question; someone else gets none
    of these controls."""
    room = new_room()
    with no_page_errors(browser):
        alice = await open_live(browser, roomchat_server, room)
        bob = await open_live(browser, roomchat_server, room, locale="ko-KR")
        await ask(
            alice,
            "Which cakes? [[sim tokens=40 fault=truncate fault_after=12 fail_times=1 tps=40]]",
        )
        failed = alice.locator("article.answer")
        await expect(failed).to_have_attribute("data-status", "failed", timeout=30000)
        partial = (await failed.locator(".md").inner_text()).strip()
        assert partial
        await expect(bob.locator("article.answer")).to_have_attribute("data-status", "failed")
        await expect(bob.locator(".continue-btn, .regenerate-btn")).to_have_count(0)

        await alice.locator(".continue-btn").click()
        for page in (alice, bob):
            shown = page.locator("article.answer:visible")
            await expect(shown).to_have_count(1)
            await expect(shown).to_have_attribute("data-status", "complete", timeout=30000)
            await expect(shown).to_have_attribute("data-version", "2")
            await expect(shown.locator(".version-of")).to_have_text("2 / 2")
            whole = (await shown.locator(".md").inner_text()).strip()
            assert whole.startswith(partial[:20]) and len(whole) > len(partial)
        await expect(alice.locator(".continue-btn")).to_have_count(0)  # it completed

        await alice.locator("article.answer:visible .regenerate-btn").click()
        third = alice.locator("article.answer:visible")
        await expect(third).to_have_attribute("data-version", "3", timeout=30000)
        await expect(third).to_have_attribute("data-status", "complete", timeout=30000)
        await expect(third.locator(".version-of")).to_have_text("3 / 3")
        await third.locator(".version-prev").click()
        await expect(alice.locator("article.answer:visible")).to_have_attribute("data-version", "2")
        await expect(alice.locator("article.answer:visible .version-of")).to_have_text("2 / 3")
        await expect(bob.locator("article.answer:visible .version-of")).to_have_text("3 / 3")
        await expect(bob.locator("article.answer:visible .version-prev")).to_have_attribute(
            "aria-label", "이전 버전"
        )

        # Edit: only on one's own question; the edited one is a new question, marked so.
        await expect(bob.locator(".edit-btn")).to_have_count(0)
        await alice.locator("article.question .edit-btn").click()
        editor = alice.locator(".edit-text")
        await editor.fill("Which cakes have no nuts? [[sim tokens=5]]")
        await editor.press("Enter")
        for page, tag in ((alice, "edited"), (bob, "수정됨")):
            edited = page.locator("article.question").nth(1)
            await expect(edited.locator(".question-text")).to_have_text(
                "Which cakes have no nuts? [[sim tokens=5]]", timeout=10000
            )
            await expect(edited.locator(".edited-tag")).to_have_text(tag)
            await expect(page.locator("article.answer:visible").last).to_have_attribute(
                "data-status", "complete", timeout=30000
            )
