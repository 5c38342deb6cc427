"""Where a log line comes from: the room, answer, user and request being handled, and this
worker, kept in context variables so that every line logged while handling them carries them
(config.logformat adds them to each record), and what one answer learned of its LLM call.

A context variable follows the work: an answer's task starts with a copy of the context of
the frame or request that asked it, and the LLM provider, running inside that task, writes
its request id and timing into the answer's `LLMCall`.
"""

from __future__ import annotations

import os
import socket
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class LogContext:
    """What is being handled; blank when not known."""

    room: str = ""
    answer_id: str = ""
    user_id: str = ""
    request_id: str = ""


@dataclass(slots=True)
class LLMCall:
    """One answer's LLM request, as the provider saw it."""

    request_id: str = ""  # the LLM server's (`x-request-id`), to find the call in its logs
    # From the first attempt sent to the first token received, retries included.
    first_token_seconds: float | None = None
    retries: int = 0


# Frozen, so a shared default is safe.
_context: ContextVar[LogContext] = ContextVar("chat_log_context", default=LogContext())  # noqa: B039
_llm_call: ContextVar[LLMCall | None] = ContextVar("chat_llm_call", default=None)
_worker = f"{socket.gethostname()}-{os.getpid()}"


def current() -> LogContext:
    return _context.get()


def bind(**fields: str) -> None:
    """Set some fields of the current context (for the rest of this task and what it starts)."""
    _context.set(replace(_context.get(), **fields))


def worker() -> str:
    return _worker


def set_worker(worker_id: str) -> None:
    """The runtime's worker id (host, pid and a random tail), once it has one."""
    global _worker
    _worker = worker_id


def start_llm_call() -> LLMCall:
    """A new record for the LLM call of the answer running in this task; the provider fills
    it in (`llm_call()`), the answer's log line and metrics read it."""
    call = LLMCall()
    _llm_call.set(call)
    return call


def llm_call() -> LLMCall | None:
    return _llm_call.get()
