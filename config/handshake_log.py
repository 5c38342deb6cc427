"""Autobahn formats its whole configuration for a debug line on every WebSocket connection,
whether or not debug lines are logged (`pformat` of about 40 settings in `_connectionMade`):
about 6 % of a worker's time in a reconnect storm (docs/benchmarks.md, "Reconnect storm").

`skip_unlogged_config_dump()` makes that one call cheap while Autobahn's debug level is off.
Autobahn's module-level `pformat` also serves `Timings.__str__`, which must return the real
text, so only the configuration list (the one `list` it is given) is skipped, and only while
the line would not be logged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def skip_unlogged_config_dump() -> bool:
    """Under daphne (Autobahn already imported, with Twisted chosen for txaio): patch Autobahn's
    `pformat`; True if it did. Elsewhere nothing is imported or changed."""
    protocol: Any = sys.modules.get("autobahn.websocket.protocol")
    if protocol is None or getattr(protocol.pformat, "_chat_patched", False):
        return False
    import txaio as txaio_module
    from txaio.interfaces import log_levels

    txaio: Any = txaio_module  # its API is bound when a framework is chosen

    real: Callable[[Any], str] = protocol.pformat
    debug = log_levels.index("debug")

    def pformat_when_logged(value: Any) -> str:
        # Autobahn's loggers follow txaio's global level (daphne sets none of its own).
        level = txaio.get_global_log_level()
        if isinstance(value, list) and log_levels.index(level) < debug:
            return ""  # the configuration dump, for a debug line that is not logged
        return real(value)

    pformat_when_logged._chat_patched = True  # type: ignore[attr-defined]
    protocol.pformat = pformat_when_logged
    return True
