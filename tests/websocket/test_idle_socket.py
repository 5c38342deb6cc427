"""What an idle socket holds (the speed issue's memory per idle connection): the application's
own task and nothing of Channels' dispatch or routing in its chain of awaits. Through the real
ASGI application."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from config.inbox import trim_input_queue
from tests.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)


def _chain(coroutine: Any) -> list[str]:
    """The qualified names of the coroutines a task's coroutine awaits, outermost first."""
    names = []
    while coroutine is not None and hasattr(coroutine, "cr_code"):
        names.append(coroutine.cr_code.co_qualname)
        coroutine = coroutine.cr_await
    return names


async def test_an_idle_socket_runs_in_its_one_task_with_the_consumer_at_the_top(llm: Any) -> None:
    members = [await connect("idle") for _ in range(3)]
    await asyncio.sleep(0.05)
    # No task of its own waits on a socket's receive() (the communicator's is Queue.get):
    # Channels' await_many_dispatch kept one per socket, with asyncio.wait's waiter.
    receiving = [
        task for task in asyncio.all_tasks() if task.get_coro().__qualname__ == "Queue.get"
    ]
    assert receiving == []
    task = members[0].ws.future
    # Nothing of the routers or of `as_asgi()` stays awaiting in the socket's chain: the
    # consumer is the task's coroutine, waiting on the server's receive().
    assert _chain(task.get_coro())[0] == "ChatConsumer.__call__"
    assert not any(
        "Router" in name or "await_many_dispatch" in name for name in _chain(task.get_coro())
    )
    # Its input queue keeps no deque for putters nor an event for join() (config.inbox).
    assert members[0].ws.input_queue._putters == ()
    # The socket is served as before: a ping is answered.
    await members[0].send({"type": "ping"})
    assert (await members[0].recv_until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    for member in members:
        await member.close()


async def test_a_path_no_route_matches_is_refused() -> None:
    communicator = WebsocketCommunicator(application, "/ws/elsewhere/")
    with pytest.raises(ValueError, match="No route found for path"):
        await communicator.connect(timeout=5)


async def test_a_trimmed_input_queue_delivers_in_order_and_wakes_a_waiting_get() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    trim_input_queue(queue.get)
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(1)
    assert await asyncio.wait_for(waiting, 1) == 1
    for item in (2, 3, 4):
        queue.put_nowait(item)
    await queue.put(5)  # never waits: the queue is unbounded
    assert [await queue.get() for _ in range(4)] == [2, 3, 4, 5]
    assert queue.empty()


async def test_only_a_plain_unbounded_unused_queue_is_trimmed() -> None:
    bounded: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    trim_input_queue(bounded.get)
    assert isinstance(bounded._putters, deque)  # type: ignore[attr-defined]
    used: asyncio.Queue[int] = asyncio.Queue()
    used.put_nowait(1)  # unfinished: someone may join() it
    trim_input_queue(used.get)
    assert isinstance(used._finished, asyncio.Event) and not used._finished.is_set()  # type: ignore[attr-defined]
    trim_input_queue(print)  # not a queue's get: nothing to do
