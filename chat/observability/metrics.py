"""Every metric this server exports, defined in this one place (docs/operations.md lists
them); the code that already knows a thing records it here (the answer runner and ends, the
hub's outboxes, the consumer, the LLM provider's retries, admission's rate limits).

Each daphne worker is its own process and serves its own metrics at `/metrics`: scrape every
worker as its own target. Only when several processes share one port, `PROMETHEUS_MULTIPROC_DIR`
makes them write to files that `/metrics` adds up (prometheus-client's multi-process mode; the
gauges say how they add up).

The hot path stays cheap: labels known in advance are bound once, here, so recording is an
increment, not a label lookup.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds from a question to its first delta: people notice past a second.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# A room-log append is one Redis round trip (or none, in one process).
_APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

TRANSPORTS = ("websocket", "sse", "command")
CONNECTIONS_OPEN = Gauge(
    "chat_connections_open",
    "Members connected to this worker, by transport (WebSocket, SSE reader, ask command).",
    ["transport"],
    multiprocess_mode="livesum",
)
CONNECTIONS_BY_TRANSPORT = {name: CONNECTIONS_OPEN.labels(name) for name in TRANSPORTS}

ROOMS_WITH_MEMBERS = Gauge(
    "chat_rooms_with_members",
    "Rooms this worker delivers to (at least one member connected here).",
    multiprocess_mode="livesum",
)
ANSWERS_RUNNING = Gauge(
    "chat_answers_running",
    "Answers being written by this worker.",
    multiprocess_mode="livesum",
)

ANSWERS = Counter(
    "chat_answers",
    "Answers ended, by final status and error code (`none` without one), counted by the "
    "worker that appended the end: the owner's, or a survivor's for `interrupted` answers "
    "whose worker died (answers outside rooms by their own worker).",
    ["status", "error"],
)

FIRST_DELTA_SECONDS = Histogram(
    "chat_answer_first_delta_seconds",
    "From a question admitted to its answer's first delta in the room log.",
    buckets=_LATENCY_BUCKETS,
)
FIRST_DELTA_SERVER_SECONDS = Histogram(
    "chat_answer_first_delta_server_seconds",
    "The server's own share of the first delta's wait: its time minus the LLM's first "
    "token time (retrieval, prompt, storage, the room log).",
    buckets=_LATENCY_BUCKETS,
)
LLM_FIRST_TOKEN_SECONDS = Histogram(
    "chat_llm_first_token_seconds",
    "From the LLM request sent (retries included) to its first token received.",
    buckets=_LATENCY_BUCKETS,
)

DELTAS = Counter("chat_answer_deltas", "Pieces of answers (LLM deltas) delivered to rooms.")
TOKENS = Counter(
    "chat_llm_tokens",
    "Tokens the LLM reported using (prompt, completion), for answers that ended with usage.",
    ["kind"],
)
PROMPT_TOKENS = TOKENS.labels("prompt")
COMPLETION_TOKENS = TOKENS.labels("completion")

FRAMES_REFUSED = Counter(
    "chat_frames_refused",
    "Client frames and requests answered with an error, by the protocol's error code.",
    ["code"],
)
SOCKETS_CLOSED = Counter(
    "chat_sockets_closed",
    "Connections the server closed, by close code (4008: a slow reader; 1008: a flood).",
    ["code"],
)
ROOM_LOG_APPEND_SECONDS = Histogram(
    "chat_room_log_append_seconds",
    "Time of one append to a room log (one Redis script call with several workers).",
    buckets=_APPEND_BUCKETS,
)
REDIS_RECONNECTS = Counter(
    "chat_redis_reconnects",
    "Connections of the room log's and coordinator's Redis pool opened again after a drop.",
)
RATE_LIMITED = Counter(
    "chat_rate_limited",
    "Asks and messages refused by a rate limit (`ask`, `say`).",
    ["what"],
)
RATE_LIMITED_ASKS = RATE_LIMITED.labels("ask")
RATE_LIMITED_SAYS = RATE_LIMITED.labels("say")
LLM_RETRIES = Counter(
    "chat_llm_retries",
    "LLM requests sent again after a failure, by its error code (llm_rate_limited: a 429).",
    ["reason"],
)

_answers_by_end: dict[tuple[str, str], Counter] = {}
_refused_by_code: dict[str, Counter] = {}
_closed_by_code: dict[int, Counter] = {}


def answer_ended(status: str, error_code: str | None) -> None:
    key = (status, error_code or "none")
    child = _answers_by_end.get(key)
    if child is None:
        child = _answers_by_end[key] = ANSWERS.labels(*key)
    child.inc()


def frame_refused(code: str) -> None:
    child = _refused_by_code.get(code)
    if child is None:
        child = _refused_by_code[code] = FRAMES_REFUSED.labels(code)
    child.inc()


def socket_closed(code: int) -> None:
    child = _closed_by_code.get(code)
    if child is None:
        child = _closed_by_code[code] = SOCKETS_CLOSED.labels(str(code))
    child.inc()
