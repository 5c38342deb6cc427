"""The simulator's aiohttp application: routes, and a request id on every response."""

from __future__ import annotations

import secrets

from aiohttp import web

from .admin import admin_config, admin_reset, admin_stats, models
from .state import STATE_KEY, SimulatorState
from .stream import chat_completions


def build_app(state: SimulatorState) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_sim/config", admin_config)
    app.router.add_post("/_sim/config", admin_config)
    app.router.add_get("/_sim/stats", admin_stats)
    app.router.add_post("/_sim/reset", admin_reset)
    app.on_response_prepare.append(_request_id)
    return app


async def _request_id(request: web.Request, response: web.StreamResponse) -> None:
    """`x-request-id`, as OpenAI sends: the server's name for the request, which a client
    logs so that one call can be found on both sides."""
    response.headers.setdefault("x-request-id", f"req_{secrets.token_hex(12)}")
