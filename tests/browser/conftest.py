"""Fixtures for the browser tests: Debian's Chromium driven by Playwright (async API), and the
real server (daphne + the LLM simulator) started once per session as subprocesses.

Playwright cannot download its own browser here; the tests use /usr/bin/chromium
(`apt-get install -y chromium fonts-nanum`) and are skipped, with that reason, only when it is
missing. The page's libraries are committed in frontend/static/vendor/ (scripts/update-vendor).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.procs import free_port, stop_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
TEST_USER = ("alice", "correct-horse-battery")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's Chromium is not installed at /usr/bin/chromium "
            "(apt-get install -y chromium fonts-nanum); Playwright cannot download a browser here"
        )
    return str(CHROMIUM)


def _wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited early:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: any status will do
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def simulator_process(port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """`python -m llmsim` on `port`; yields its OpenAI base URL."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "llmsim", "--port", str(port),
                "--tps", "30", "--first-token-delay", "0.1",
            ],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_for_http(f"http://127.0.0.1:{port}/v1/models", proc, log, 30)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            stop_process(proc)


@dataclass
class RoomchatServer:
    url: str  # http://127.0.0.1:PORT
    simulator_url: str  # http://127.0.0.1:PORT/v1
    logs: Path
    env: dict[str, str]  # the server's environment, for manage.py commands against it

    def manage(self, *args: str) -> str:
        """Run a management command against the server's database; its stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout


@pytest.fixture(scope="session")
def roomchat_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RoomchatServer]:
    """daphne serving config.asgi:application, with the LLM simulator as its OpenAI endpoint,
    a fresh SQLite database (migrated, with a test user) and the sample knowledge base."""
    from tests.servers import daphne, migrate, server_env

    tmp = tmp_path_factory.mktemp("roomchat")
    sim_port = free_port()
    env = server_env(
        tmp,
        {
            "CHROMA_PATH": str(tmp / "chroma"),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
            "OPENAI_API_KEY": "sim-key",
            "CHAT_ALLOW_GUESTS": "1",
            # The tests ask quickly from a few guests: keep the limits out of their way.
            "CHAT_ASK_RATE_PER_MINUTE": "600",
            "CHAT_ASK_BURST": "50",
            # Every browser here is a guest from 127.0.0.1.
            "CHAT_ADDRESS_ASK_RATE_PER_MINUTE": "600",
            "CHAT_ADDRESS_ASK_BURST": "50",
            "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "1000",
            "DJANGO_SUPERUSER_USERNAME": TEST_USER[0],
            "DJANGO_SUPERUSER_PASSWORD": TEST_USER[1],
            "DJANGO_SUPERUSER_EMAIL": "alice@example.com",
        },
    )
    migrate(env)
    for args in (["createsuperuser", "--no-input"], ["ingest", str(REPO / "knowledge")]):
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, timeout=300
        )
    web_log = tmp / "daphne.log"
    with (
        simulator_process(sim_port, env, tmp / "simulator.log") as simulator_url,
        daphne(env, log=web_log) as url,
    ):
        _check_static(url, web_log)
        yield RoomchatServer(url=url, simulator_url=simulator_url, logs=tmp, env=env)


def _check_static(url: str, log: Path) -> None:
    """The page is useless without its scripts: say so plainly when they are not served."""
    try:
        with urllib.request.urlopen(f"{url}/static/chat/js/room.js", timeout=5):
            return
    except OSError as err:
        raise RuntimeError(
            f"The server does not serve /static/chat/js/room.js ({err}): the page cannot load "
            "its scripts (WhiteNoise serves frontend/static; see docs/frontend.md).\n"
            + log.read_text()[-2000:]
        ) from err


# --- browser ------------------------------------------------------------------------------


@dataclass
class Browser:
    """One Chromium for one test (async Playwright objects belong to the test's event loop)."""

    browser: Any
    errors: list[str]

    async def page(
        self,
        *,
        width: int = 1280,
        height: int = 800,
        locale: str = "en-US",
        color_scheme: str = "light",
        **context_options: Any,
    ) -> Any:
        context = await self.browser.new_context(
            viewport={"width": width, "height": height},
            locale=locale,
            color_scheme=color_scheme,
            **context_options,
        )
        page = await context.new_page()
        page.on("pageerror", lambda err: self.errors.append(f"pageerror: {err}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console.error: {msg.text}") if msg.type == "error" else None
            ),
        )
        return page


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        wrapper = Browser(browser=chromium, errors=[])
        try:
            yield wrapper
        finally:
            await chromium.close()


PageFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
def new_page(browser: Browser) -> PageFactory:
    return browser.page


@contextlib.contextmanager
def no_page_errors(browser: Browser) -> Iterator[None]:
    """Fail when the page threw or logged an error (ignoring refused resource loads)."""
    start = len(browser.errors)
    yield
    errors = [e for e in browser.errors[start:] if "Failed to load resource" not in e]
    assert not errors, errors
