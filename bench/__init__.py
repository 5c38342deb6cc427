"""Benchmarks of the chat server against its baselines: `python -m bench.run`
(docs/benchmarks.md)."""
