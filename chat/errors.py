"""A small error hierarchy. Every error a client can see has a protocol `code` and a message a
person understands; SDK errors are translated at the boundary with `raise ... from err`."""

from __future__ import annotations


class ChatError(Exception):
    """Base class for errors that end up in an `error` frame or an `answer.end` error."""

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class LLMError(ChatError):
    """The LLM failed to produce a complete answer (connection, HTTP status, timeout, bad data).

    Codes: `llm_unavailable`, `llm_timeout`, `llm_rate_limited`, `llm_server_error`,
    `llm_rejected`, `llm_truncated`, `llm_bad_response`.
    """

    code = "llm_error"


class RetrievalError(ChatError):
    """The knowledge base could not be searched."""

    code = "retrieval_failed"
