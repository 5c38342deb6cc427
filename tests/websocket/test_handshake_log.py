"""Autobahn's configuration dump on every connection (config.handshake_log): skipped while its
debug line would not be logged, written when it would; Autobahn's other use of `pformat`
(`Timings.__str__`) is untouched. In a child process: choosing Twisted for txaio, as daphne
does, must not leak into this test process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.servers import ROOT

CHILD = textwrap.dedent(
    """
    import autobahn.twisted.websocket  # what daphne imports first: txaio on Twisted
    import autobahn.websocket.protocol as protocol
    import txaio
    from config.handshake_log import skip_unlogged_config_dump

    config = [("autoPingInterval", 20, "WebSocketFactory")]
    assert protocol.pformat(config) != ""
    assert skip_unlogged_config_dump() is True
    assert skip_unlogged_config_dump() is False  # once
    assert protocol.pformat(config) == "", "formatted for a line that is not logged"
    timings = protocol.Timings()
    timings.track("a")
    assert str(timings).startswith("{"), str(timings)
    txaio.set_global_log_level("debug")
    assert "autoPingInterval" in protocol.pformat(config)
    print("ok")
    """
)


def test_the_configuration_dump_is_skipped_only_while_it_is_not_logged() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_without_autobahn_loaded_nothing_is_patched() -> None:
    child = (
        "from config.handshake_log import skip_unlogged_config_dump\n"
        "import sys\n"
        "assert skip_unlogged_config_dump() is False\n"
        "assert 'autobahn.websocket.protocol' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
