"""The outage tests' TCP proxy: `bench.tcp_proxy` (shared with the soak benchmark)."""

from bench.tcp_proxy import TcpProxy

__all__ = ["TcpProxy"]
