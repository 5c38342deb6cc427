"""The ports the benchmarks and the test clusters start their servers on (bench.procs)."""

from __future__ import annotations

import socket

from bench.procs import free_ports


def test_ports_chosen_together_are_distinct_and_free() -> None:
    """Workers started at once each get a port of their own: chosen one by one, with each
    socket closed before the next is bound, the kernel may hand out the same port again (500
    ports from a range of about 14,000 repeat one with near certainty), and two workers then
    race for it (a cluster test once found its 'worker 0' answered by worker 1)."""
    ports = free_ports(500)
    assert len(set(ports)) == 500
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it any more
