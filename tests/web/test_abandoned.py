"""A disconnect listener Django's ASGI handler left behind (config.abandoned): its
`RequestAborted` is not logged as an error; any other task's unretrieved exception still is."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from django.core.exceptions import RequestAborted

from config.abandoned import quiet_abandoned_disconnects


async def _raise(error: Exception) -> None:
    raise error


async def test_an_abandoned_listeners_request_aborted_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    quiet_abandoned_disconnects(loop)
    quiet_abandoned_disconnects(loop)  # once
    try:
        caplog.set_level(logging.DEBUG)
        for error in (RequestAborted(), ValueError("a real bug")):
            task = asyncio.ensure_future(_raise(error))
            await asyncio.sleep(0)
            assert task.done()
            del task
            gc.collect()  # the task is collected with its exception never retrieved
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert errors[0].exc_info is not None
        assert isinstance(errors[0].exc_info[1], ValueError)
        assert any("left behind" in r.getMessage() for r in caplog.records)
    finally:
        loop.set_exception_handler(previous)
