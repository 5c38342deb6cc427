"""One simulated person in the soak: a `websockets` client that joins its room, reads every
frame into its `MemberTrack`, and churns as real people do: it leaves and comes back later
(a fresh join), reconnects with `after=<last seq>` (dropping the socket, or closing it), and on
any close the server chose (1012, 4008, 1011 ...) or a dropped socket it resumes with
`after`, with a backoff while the server refuses it (Redis away)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING, Any

import websockets

from bench.soak.plan import AskRecord, Slot
from bench.soak.tracker import MemberTrack, RoomTrack

if TYPE_CHECKING:
    from bench.soak.clients import Client

WELCOME_TIMEOUT = 30.0
# Seconds after a (re)join before questions still unconfirmed are sent again (same client_id).
RESEND_AFTER = 2.0
MAX_TRIES = 4


class Member:
    """A slot's life: sessions (fresh joins) made of connections (resumes)."""

    def __init__(self, slot: Slot, client: Client) -> None:
        self.slot = slot
        self.client = client
        self.room: RoomTrack = client.rooms[slot.room]
        self.worker = slot.worker
        self.cookie = ""
        self.ws: Any = None
        self.track = MemberTrack(self.room, slot.name)
        self.state = "waiting"  # waiting, joining, connected, reconnecting, away, done
        self.intent: str | None = None
        self.pending: list[str] = []
        self.sessions = 0
        self.last_ask_at = 0.0

    @property
    def counters(self) -> Counter[str]:
        return self.client.counters

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    async def live(self) -> None:
        try:
            await self._live()
        except Exception as err:
            # A bug of the soak's own, not of the server: shown in the results.
            self.client.failures.append(f"{self.slot.name}: {err!r}")
            self.state = "failed"
            raise

    async def _live(self) -> None:
        await self.client.sleep_until(self.slot.join_at)
        await self._get_cookie()
        while not self.client.stopping:
            self.sessions += 1
            self.track = MemberTrack(self.room, f"{self.slot.name}#{self.sessions}")
            await self._session()
            if self.client.stopping:
                break
            self.state = "away"
            await asyncio.sleep(self.client.rng.uniform(*self.client.size.away))
        self.state = "done"

    async def _get_cookie(self) -> None:
        """A guest session from the room page, kept for all this person's connections (so a
        question sent again after a reconnect is recognised by its client_id)."""
        port = self.client.ports[self.worker]
        url = f"http://127.0.0.1:{port}/rooms/{self.slot.room}/"
        for attempt in range(30):
            try:
                headers = await asyncio.to_thread(_get_headers, url)
            except OSError:
                self.counters["session page failed"] += 1
                await asyncio.sleep(min(5.0, 0.5 * 2**attempt))
                continue
            cookies = [c.split(";")[0] for c in headers if c.startswith("sessionid=")]
            if cookies:
                self.cookie = cookies[0]
                return
        self.counters["no session cookie (a new guest each connection)"] += 1

    async def _session(self) -> None:
        """Connect, and resume with `after` whenever the connection ends, until we leave."""
        after: int | None = None
        failures = 0
        while not self.client.stopping:
            reason = await self._connection(after)
            if reason == "leave" or self.client.stopping:
                return
            if reason == "connect failed":
                failures += 1
                await asyncio.sleep(min(5.0, 0.25 * 2**failures) * self.client.rng.uniform(0.5, 1))
            else:
                failures = 0
                await asyncio.sleep(self.client.rng.uniform(0.05, 1.0))
                if self.client.rng.random() < 0.5:
                    self.worker = 1 - self.worker  # a balancer may send it to the other one
            after = self.track.cursor

    async def _connection(self, after: int | None) -> str:
        self.state = "joining" if after is None else "reconnecting"
        port = self.client.ports[self.worker]
        url = f"ws://127.0.0.1:{port}/ws/rooms/{self.slot.room}/"
        if after is not None:
            url += f"?after={after}"
        headers = {"Cookie": self.cookie} if self.cookie else None
        try:
            ws = await websockets.connect(
                url,
                origin=f"http://127.0.0.1:{port}" if self.cookie else None,
                additional_headers=headers,
                open_timeout=WELCOME_TIMEOUT,
                ping_interval=None,
                close_timeout=5,
                max_size=2**24,
                compression=None,
                proxy=None,
            )
        except Exception as err:
            self.counters[f"connect failed: {_describe(err)}"] += 1
            return "connect failed"
        try:
            async with asyncio.timeout(WELCOME_TIMEOUT):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "welcome":
                        break
                    if "seq" in frame:
                        self.track.before_welcome(frame)
        except Exception as err:
            self.counters[f"no welcome: {_describe(err)}"] += 1
            with contextlib.suppress(Exception):
                await ws.close()
            return "connect failed"
        if after is None:
            self.counters["welcome: fresh join"] += 1
        elif frame.get("resumed"):
            self.counters["welcome: resumed"] += 1
        else:
            self.counters["welcome: full, on a resume"] += 1
        self.track.on_welcome(frame, after)
        if self.client.stopping:
            with contextlib.suppress(Exception):
                await ws.close()
            return "stop"
        self.ws = ws
        self.state = "connected"
        helpers = [asyncio.create_task(self._churn(ws))]
        if self.pending:
            helpers.append(asyncio.create_task(self._resend_later()))
        try:
            async for raw in ws:
                self._on_frame(raw)
        except websockets.ConnectionClosed:
            pass
        finally:
            for helper in helpers:
                helper.cancel()
            self.ws = None
            self.state = "reconnecting"
        intent, self.intent = self.intent, None
        if intent is not None:
            self.counters[intent] += 1
            return "leave" if intent == "leave" else "reconnect"
        received = ws.protocol.close_rcvd
        self.counters[f"closed by the server: {received.code}" if received else "dropped"] += 1
        return "closed"

    def _on_frame(self, raw: str | bytes) -> None:
        frame = json.loads(raw)
        self.counters["frames"] += 1
        if "seq" in frame and frame.get("type") != "welcome":
            self.track.on_event(frame)
            if frame["type"] == "question" and frame.get("client_id"):
                self.client.posted(frame["client_id"], frame["id"])
        elif frame.get("type") == "error":
            self._refused(frame)
        else:
            self.counters[f"frames: {frame.get('type')}"] += 1

    async def _churn(self, ws: Any) -> None:
        """Leave, or reconnect, after an exponential wait (only while questions are asked)."""
        size, rng = self.client.size, self.client.rng
        leave_in = rng.expovariate(1 / size.leave_every)
        reconnect_in = rng.expovariate(1 / size.reconnect_every)
        delay = min(leave_in, reconnect_in)
        if self.client.now() + delay > self.client.timeline.ask_until:
            return
        await asyncio.sleep(delay)
        if leave_in < reconnect_in:
            self.intent = "leave"
            await ws.close()
        elif rng.random() < 0.5:
            self.intent = "reconnect (socket dropped)"
            ws.transport.abort()
        else:
            self.intent = "reconnect (closed)"
            await ws.close()

    # --- questions ------------------------------------------------------------------------

    async def ask(self, record: AskRecord, text: str) -> None:
        self.pending.append(record.client_id)
        self.client.ask_texts[record.client_id] = text
        await self._send_ask(record)

    async def _send_ask(self, record: AskRecord) -> None:
        ws = self.ws
        if ws is None:
            return  # sent again after the next welcome
        self.last_ask_at = time.monotonic()
        text = self.client.ask_texts[record.client_id]
        try:
            await ws.send(json.dumps({"type": "ask", "text": text, "client_id": record.client_id}))
        except websockets.ConnectionClosed:
            self.counters["ask on a closing socket"] += 1

    async def _resend_later(self, delay: float = RESEND_AFTER) -> None:
        """Questions whose `question` event has not come: send them again, same client_id."""
        await asyncio.sleep(delay)
        for client_id in list(self.pending):
            record = self.client.asks[client_id]
            if record.state != "pending":
                self.pending.remove(client_id)
            elif record.tries >= MAX_TRIES:
                record.state = "unconfirmed"
                self.pending.remove(client_id)
            else:
                record.tries += 1
                self.counters["asks sent again"] += 1
                await self._send_ask(record)

    def _refused(self, frame: dict[str, Any]) -> None:
        code = str(frame.get("code"))
        self.counters[f"error frame: {code}"] += 1
        if not self.pending or time.monotonic() - self.last_ask_at > 10:
            return
        record = self.client.asks[self.pending[-1]]
        record.refusals.append(code)
        if code in ("rate_limited", "busy") and record.tries < MAX_TRIES:
            wait = float(frame.get("retry_after") or 2.0)
            task = asyncio.create_task(self._resend_later(wait))
            self.client.background.add(task)
            task.add_done_callback(self.client.background.discard)
        else:
            record.state = "refused"
            self.pending.remove(record.client_id)

    async def close(self) -> None:
        ws = self.ws
        if ws is not None:
            self.intent = "stop"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


def _get_headers(url: str) -> list[str]:
    with _OPENER.open(url, timeout=30) as reply:
        return reply.headers.get_all("Set-Cookie") or []


def _describe(err: BaseException) -> str:
    if isinstance(err, websockets.InvalidStatus):
        return f"HTTP {err.response.status_code}"
    if isinstance(err, websockets.ConnectionClosed):
        code = err.rcvd.code if err.rcvd is not None else "no close frame"
        return f"closed {code}"
    return type(err).__name__
