"""The one log line each answer ends with, in a room or not."""

from __future__ import annotations

import logging

from chat.observability.context import LLMCall

logger = logging.getLogger("chat.answers")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def log_answer_end(
    answer_id: str,
    *,
    status: str,
    error_code: str | None,
    characters: int,
    first_delta_seconds: float | None,
    llm: LLMCall,
) -> None:
    """How it ended, how long its first delta took, and which LLM request made it with that
    request's own first token time (a slow LLM or a slow server). Never the question's or the
    answer's text."""
    logger.info(
        "Answer %s ended %s (error %s): %d characters, first delta %s, LLM request %s, "
        "LLM first token %s, %d LLM retries",
        answer_id,
        status,
        error_code or "-",
        characters,
        _seconds(first_delta_seconds),
        llm.request_id or "-",
        _seconds(llm.first_token_seconds),
        llm.retries,
        extra={
            "fields": {
                "status": status,
                "error": error_code,
                "first_delta_seconds": first_delta_seconds,
                "llm_request_id": llm.request_id or None,
                "llm_first_token_seconds": llm.first_token_seconds,
                "llm_retries": llm.retries,
            }
        },
    )


def observe_first_delta(waited: float, llm: LLMCall) -> None:
    """The first delta's wait, and the server's share of it (minus the LLM's first token)."""
    from chat.observability import metrics

    metrics.FIRST_DELTA_SECONDS.observe(waited)
    if llm.first_token_seconds is not None:
        metrics.FIRST_DELTA_SERVER_SECONDS.observe(max(0.0, waited - llm.first_token_seconds))
