"""The project's channels_redis layer (`chat.realtime.channel_layer`) where Redis is away."""

from __future__ import annotations

import logging
import socket

import pytest

from chat.realtime.channel_layer import RedisChannelLayer


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_backup_that_cannot_be_cleared_is_a_warning_not_a_lost_task_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """channels_redis fires this cleaner as a task nobody awaits, after every message
    received: Redis gone at that moment must not end it with an exception nobody reads."""
    layer = RedisChannelLayer(
        hosts=[{"address": f"redis://127.0.0.1:{closed_port()}/0", "socket_connect_timeout": 1}]
    )
    with caplog.at_level(logging.WARNING, logger="chat.realtime.channel_layer"):
        await layer._clean_receive_backup(0, "specific.worker!control")
    assert "Could not clear the backup of a message received" in caplog.text
