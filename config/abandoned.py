"""Django's ASGI handler runs each request beside a task that listens for the client's
disconnect. When the handler itself is cancelled while it waits (daphne stopping, or killing an
application that outlived its close timeout, with requests in flight), that listener is left
behind; once the client's disconnect reaches it, it ends with `RequestAborted`, which Django
ignores everywhere else, and asyncio logs it as an ERROR with a traceback when the task is
collected ("Task exception was never retrieved"). A flake in the server-log checks of the API
tests, and noise for an operator.

`quiet_abandoned_disconnects()` has the running loop log exactly that case at DEBUG; every other
report goes to the handler that was there before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.exceptions import RequestAborted

logger = logging.getLogger(__name__)

# The loop the filter was last installed on: called for every request (config.asgi), this is
# the one check made each time.
_installed_on: asyncio.AbstractEventLoop | None = None


def quiet_abandoned_disconnects(loop: asyncio.AbstractEventLoop) -> None:
    """Install the filter on `loop` (once; calling again does nothing)."""
    global _installed_on
    if loop is _installed_on:
        return
    _installed_on = loop
    previous = loop.get_exception_handler()
    if getattr(previous, "_chat_quiet_disconnects", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), RequestAborted) and "never retrieved" in str(
            context.get("message", "")
        ):
            logger.debug("A request's disconnect listener was left behind: %s", context)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler._chat_quiet_disconnects = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
