"""A browser's own `EventSource` reads a room from the real server, and the page posts a
question with the session's CSRF token (headless Chromium, Debian's, through Playwright)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium"
    ),
]

SCRIPT = """
async () => {
  const source = new EventSource("/api/rooms/browser/events");
  const seen = [];
  const done = new Promise((resolve, reject) => {
    const types = ["welcome", "question", "answer.start", "answer.sources", "answer.delta"];
    for (const type of types) {
      source.addEventListener(type, (e) => seen.push([type, e.lastEventId, JSON.parse(e.data)]));
    }
    source.addEventListener("answer.end", (e) => {
      seen.push(["answer.end", e.lastEventId, JSON.parse(e.data)]);
      source.close();
      resolve(seen);
    });
    setTimeout(() => reject(new Error("no answer.end in time")), 20000);
  });
  await new Promise((resolve) => source.addEventListener("welcome", resolve, { once: true }));
  const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
  const response = await fetch("/api/rooms/browser/questions", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": token },
    body: JSON.stringify({ text: "How much is a latte? [[sim tps=100]]" }),
  });
  if (response.status !== 202) throw new Error(await response.text());
  return await done;
}
"""


async def test_event_source_reads_the_room_and_the_page_posts_with_csrf(
    api_server: Server,
) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            await page.goto(api_server.url + "/")
            seen: list[Any] = await page.evaluate(SCRIPT)
        finally:
            await browser.close()
    kinds = [kind for kind, _, _ in seen]
    assert kinds[0] == "welcome" and kinds[-1] == "answer.end"
    welcome = seen[0][2]
    assert welcome["user"]["id"].startswith("g:")  # A guest, kept in the session.
    events = seen[1:]
    assert [e[0] for e in events[:3]] == ["question", "answer.start", "answer.sources"]
    # EventSource's lastEventId is the event's seq, as a string.
    assert all(last_id == str(data["seq"]) for _, last_id, data in events)
    assert events[0][2]["user"] == welcome["user"]
    end = events[-1][2]
    deltas = "".join(d["text"] for kind, _, d in events if kind == "answer.delta")
    assert end["status"] == "complete" and end["text"] == deltas
