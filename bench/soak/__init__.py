"""The soak: a benchmark (not a test) that holds many connections in many rooms on two workers
for a long time, with churn, and checks that nothing is lost and nothing grows.

    .venv/bin/python -m bench.soak                # an hour: 1,000 connections, 100 rooms
    .venv/bin/python -m bench.soak --quick        # five minutes: 200 connections, 20 rooms
    .venv/bin/python -m bench.soak --minutes 1 --connections 50 --rooms 5 --out soak.json

Two daphne workers share a throwaway Redis, reached through a TCP proxy that the soak cuts
every `--redis-cut-every` seconds for `--redis-cut-seconds`, and a fresh PostgreSQL database;
answers come from the project's LLM simulator. Client processes (bench.soak.clients) hold the
members: they join over a ramp, alternately on the two workers, ask questions, leave and come
back, reconnect with `after=<last seq>`, and check every frame as it comes
(bench.soak.tracker). The orchestrator (bench.soak.run) cuts Redis, samples each worker's RSS,
open files and threads and Redis' keys per room (bench.soak.resources), and at the end checks
what members saw against PostgreSQL and Redis (bench.soak.verify). docs/benchmarks.md, "Soak",
says what is checked and what "flat" means; bench.soak.report writes the results there.
"""
