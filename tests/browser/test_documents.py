"""A room's own documents in Chromium against the real server: the owner uploads a file from
the page (the file picker), watches it index to the end, the room (a guest, in Korean) gets
the notice, and the assistant's answer cites the file; a renamed program dropped on the panel
is refused with a clear message; the owner deletes the document."""

from __future__ import annotations

import secrets

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Browser, RoomchatServer, no_page_errors
from tests.browser.test_rooms_pages import new_person, signed_in

pytestmark = pytest.mark.browser

SPECIAL = (
    "Weekly special, week 48: the persimmon cheesecake costs 7,200 won and is sold until "
    "Sunday. Ask for it at the counter."
)

DROP_FILE = """
([name, text]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([text], name, { type: "application/octet-stream" }));
  const panel = document.getElementById("documents-panel");
  const options = { dataTransfer: transfer, bubbles: true, cancelable: true };
  panel.dispatchEvent(new DragEvent("dragover", options));
  panel.dispatchEvent(new DragEvent("drop", options));
}
"""


async def test_an_owner_uploads_watches_it_index_and_the_answer_cites_it(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = roomchat_server
    owner_name = new_person(server, "cafe-owner")
    room = f"cafe-{secrets.token_hex(3)}"
    server.manage("createroom", room, "--owner", owner_name)
    with no_page_errors(browser):
        owner = await signed_in(browser, server, owner_name)
        await owner.goto(f"{server.url}/rooms/{room}/")
        await expect(owner.locator("#conn-status")).to_have_attribute("data-state", "live")
        guest = await browser.page(locale="ko-KR")
        await guest.goto(f"{server.url}/rooms/{room}/")
        await expect(guest.locator("#conn-status")).to_have_attribute("data-state", "live")
        # A guest sees the list, not the upload controls.
        await guest.locator("#documents-toggle").click()
        await expect(guest.locator("#documents-empty")).to_have_text("아직 문서가 없습니다.")
        await expect(guest.locator("#documents-upload")).to_have_count(0)

        await owner.get_by_role("button", name="Documents").click()
        await expect(owner.locator("#documents-empty")).to_be_visible()
        await owner.locator("#documents-file").set_input_files(
            files=[
                {"name": "weekly-special.txt", "mimeType": "text/plain", "buffer": SPECIAL.encode()}
            ]
        )
        upload = owner.locator(".document-upload").filter(has_text="weekly-special.txt")
        await expect(upload).to_have_attribute("data-state", "done", timeout=60000)
        await expect(upload.locator(".document-status")).to_contain_text("Searchable")
        listed = owner.locator('#documents-list .document[data-name="weekly-special.txt"]')
        await expect(listed).to_contain_text(f"passages: 1 · {owner_name}")
        await expect(owner.locator(".notice-info")).to_contain_text(
            "weekly-special.txt was added by"
        )
        await expect(guest.locator(".notice-info")).to_contain_text(
            f"{owner_name} 님이 weekly-special.txt을(를) 추가했습니다"
        )
        await expect(guest.locator("#documents-list .document")).to_have_count(1)
        await expect(guest.locator("#documents-list .document-delete")).to_have_count(0)

        # A program renamed as a text file, dropped on the panel: refused, said plainly.
        await owner.evaluate(DROP_FILE, ["menu.txt", "MZ\u0090\u0000 this is a program"])
        await expect(owner.locator("#documents-error")).to_contain_text(
            "menu.txt is not a kind of document the assistant can read"
        )
        await expect(owner.locator("#documents-list .document")).to_have_count(1)

        # The assistant answers from it, citing it.
        await owner.locator("#question").fill(
            "@assistant How much is the persimmon cheesecake this week?"
        )
        await owner.locator("#question").press("Enter")
        answer = owner.locator("article.answer").last
        await expect(answer).to_have_attribute("data-status", "complete", timeout=30000)
        await answer.locator(".sources summary").click()
        await expect(answer.locator(".source-title").first).to_have_text("weekly-special.txt")
        await expect(answer.locator(".source-snippet").first).to_contain_text("persimmon")

        # Deleted: gone from the list, and the room is told.
        owner.on("dialog", lambda dialog: dialog.accept())
        await listed.get_by_role("button", name="Delete").click()
        await expect(owner.locator("#documents-list .document")).to_have_count(0)
        await expect(guest.locator(".notice-info").last).to_contain_text("삭제했습니다")
