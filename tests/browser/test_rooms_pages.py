"""Rooms people own, in Chromium against the real server: a signed-in person creates a private
room from the home page, makes an invite link in the room, and another signed-in person opens
it and joins; the owner's settings change reaches the member's page header live; the home page
in Korean."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Browser, RoomchatServer, no_page_errors

pytestmark = pytest.mark.browser

PASSWORD = "pw-rooms-123456"


def new_person(server: RoomchatServer, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    server.manage(
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_user({name!r}, "
        f"password={PASSWORD!r})",
    )
    return name


async def signed_in(browser: Browser, server: RoomchatServer, name: str, **options: Any) -> Any:
    page = await browser.page(**options)
    await page.goto(f"{server.url}/accounts/login/")
    await page.fill("#id_username", name)
    await page.fill("#id_password", PASSWORD)
    await page.locator("main form.stack button[type=submit]").click()
    await page.wait_for_url(f"{server.url}/")
    return page


async def test_a_private_room_an_invite_and_a_newcomer_who_joins(
    browser: Browser, roomchat_server: RoomchatServer
) -> None:
    server = roomchat_server
    owner_name, newcomer_name = new_person(server, "owner"), new_person(server, "newcomer")
    room = f"team-{secrets.token_hex(3)}"
    with no_page_errors(browser):
        owner = await signed_in(browser, server, owner_name)
        # Create a private room from the home page; a taken name would be said on the form.
        form = owner.locator("#create-room")
        await form.locator("#create-name").fill(room)
        await form.locator("#create-title-input").fill("Our team")
        await form.get_by_label("Private: only people you invite").check()
        await form.get_by_role("button", name="Create room").click()
        await owner.wait_for_url(f"**/rooms/{room}/")
        await expect(owner.locator("#conn-status")).to_have_attribute("data-state", "live")
        await expect(owner.locator("#room-title")).to_have_text("Our team")
        await expect(owner.locator("#room-private")).to_be_visible()
        assert await owner.title() == f"Our team · #{room} · Roomchat"

        # The owner makes an invite link for up to 5 people, without leaving the room.
        await owner.get_by_role("button", name="Invite").click()
        await owner.locator("#invite-uses").select_option("5")
        await owner.get_by_role("button", name="Make a link").click()
        link = owner.locator("#invite-url")
        await expect(link).to_have_value(re.compile(rf"^{re.escape(server.url)}/invites/\S+/$"))
        url = await link.input_value()
        await expect(owner.locator("#invite-note")).to_contain_text("uses allowed: 5")

        # Someone else, signed in: the room is not there for them until they join.
        newcomer = await signed_in(browser, server, newcomer_name)
        response = await newcomer.goto(f"{server.url}/rooms/{room}/")
        assert response is not None and response.status == 404
        await newcomer.goto(url)
        await expect(newcomer.locator(".invite-title")).to_have_text("Our team")
        await expect(newcomer.locator("main")).to_contain_text(f"Invited by {owner_name}")
        await newcomer.get_by_role("button", name="Join the room").click()
        await newcomer.wait_for_url(f"**/rooms/{room}/")
        await expect(newcomer.locator("#conn-status")).to_have_attribute("data-state", "live")
        await expect(owner.locator("#member-list .member")).to_have_count(2)
        # Members get neither the invite panel nor the settings.
        await expect(newcomer.locator("#invite-toggle")).to_have_count(0)
        await expect(newcomer.locator("#settings-link")).to_have_count(0)

        # The owner renames the room on its settings page: the newcomer's header follows live.
        await owner.locator("#settings-link").click()
        await owner.wait_for_url(f"**/rooms/{room}/settings/")
        await owner.fill("#id_title", "")
        await owner.get_by_role("button", name="Save").click()
        await expect(owner.locator("#error-title")).to_contain_text("a room needs a title")
        await owner.fill("#id_title", "Our team, renamed")
        await owner.fill("#id_description", "Plans and menus")
        await owner.get_by_role("button", name="Save").click()
        await owner.wait_for_url(f"**/rooms/{room}/")
        await expect(newcomer.locator("#room-title")).to_have_text("Our team, renamed")
        await expect(newcomer.locator("#room-description")).to_have_text("Plans and menus")
        await expect(newcomer.locator(".notice-info")).to_contain_text("settings changed")

        # On the newcomer's home page: the room is theirs now, as a member.
        await newcomer.goto(f"{server.url}/")
        mine = newcomer.locator(".my-rooms")
        await expect(mine).to_contain_text("Our team, renamed")
        await expect(mine.locator(f'a[href="/rooms/{room}/"] [data-role]')).to_have_text("member")
        # A private room is never listed to anyone else.
        stranger = await browser.page()
        await stranger.goto(f"{server.url}/")
        await expect(stranger.locator("body")).not_to_contain_text(room)


async def test_the_home_page_in_korean(browser: Browser, roomchat_server: RoomchatServer) -> None:
    server = roomchat_server
    name = new_person(server, "minji")
    with no_page_errors(browser):
        page = await signed_in(browser, server, name, locale="ko-KR")
        await expect(page.locator("#recent-title")).to_have_text("공개 방")
        await expect(page.locator("#mine-title")).to_have_text("내가 속한 방")
        await expect(page.locator("#create-title")).to_have_text("방 만들기")
        await expect(page.locator(".my-rooms .empty-note")).to_contain_text("초대 링크")
        # A refused name comes back with its message, in Korean too.
        await page.fill("#create-name", "공백 있는 이름")
        await page.locator("#create-room").get_by_role("button", name="방 만들기").click()
        await expect(page.locator("#create-error")).to_contain_text("영문자, 숫자")
        await expect(page.locator("#create-name")).to_have_value("공백 있는 이름")
        await page.screenshot(path=str(server.logs / "home-ko.png"), full_page=True)
