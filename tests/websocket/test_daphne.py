"""The real server as a process (daphne), a real WebSocket client (`websockets`), the real
`openai` client inside it talking to the simulator over HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.servers import daphne, migrate, server_env

pytestmark = pytest.mark.slow


async def recv_until(ws: Any, kind: str) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(20):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] == kind:
                return frames


async def test_two_clients_of_a_real_daphne_see_one_streamed_answer(
    tmp_path: Path, simulator: Any, knowledge_base: str
) -> None:
    env = server_env(tmp_path, {"OPENAI_BASE_URL": simulator.base_url, "OPENAI_API_KEY": "k"})
    migrate(env)
    with daphne(env, log=tmp_path / "daphne.log") as url:
        ws_url = url.replace("http", "ws") + "/ws/rooms/real/"
        async with (
            websockets.connect(ws_url) as alice,
            websockets.connect(ws_url, origin=url) as bob,
        ):
            welcome = (await recv_until(alice, "welcome"))[-1]
            await recv_until(bob, "welcome")
            await alice.send(json.dumps({"type": "ask", "text": "How much is a latte?"}))
            a = [f for f in await recv_until(alice, "answer.end") if "seq" in f]
            b = [f for f in await recv_until(bob, "answer.end") if "seq" in f]
            assert a == b
            assert a[0]["seq"] == welcome["seq"] + 1
            assert [f["seq"] for f in a] == list(range(a[0]["seq"], a[0]["seq"] + len(a)))
            text = "".join(f["text"] for f in a if f["type"] == "answer.delta")
            assert a[-1]["status"] == "complete" and a[-1]["text"] == text
            # Frames over the protocol's size limit close with 1009 before daphne's own limit.
            await bob.send(json.dumps({"type": "ask", "text": "x" * 70_000}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv_until(bob, "never")
            assert closed.value.rcvd.code == 1009
            await alice.send(json.dumps({"type": "ping"}))
            assert (await recv_until(alice, "pong"))[-1] == {"type": "pong"}
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(ws_url, origin="http://evil.example"):
                pass
