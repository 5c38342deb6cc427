"""The simulator's aiohttp application: routes only."""

from __future__ import annotations

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
    return app
