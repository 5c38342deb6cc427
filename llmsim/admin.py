"""The simulator's small admin API (`/_sim/...`) and `GET /v1/models`."""

from __future__ import annotations

from aiohttp import web

from .config import ConfigError
from .state import STATE_KEY
from .stream import error_response


async def models(request: web.Request) -> web.Response:
    """`GET /v1/models`: the one model the simulator pretends to be."""
    model = request.app[STATE_KEY].defaults.model
    entry = {"id": model, "object": "model", "created": 0, "owned_by": "simulator"}
    return web.json_response({"object": "list", "data": [entry]})


async def admin_config(request: web.Request) -> web.Response:
    """`GET /_sim/config` shows the defaults; `POST` merges a JSON object into them."""
    state = request.app[STATE_KEY]
    if request.method == "POST":
        try:
            overrides = await request.json()
            if not isinstance(overrides, dict):
                raise ConfigError("The body must be a JSON object of simulator settings.")
            state.configure(overrides)
        except (ValueError, ConfigError) as err:
            return error_response(400, str(err), kind="invalid_request_error")
    return web.json_response({"config": state.defaults.as_dict()})


async def admin_stats(request: web.Request) -> web.Response:
    """`GET /_sim/stats`: one record per request, oldest first."""
    records = request.app[STATE_KEY].snapshot()
    return web.json_response({"requests": [record.as_dict() for record in records]})


async def admin_reset(request: web.Request) -> web.Response:
    """`POST /_sim/reset`: the constructor's configuration again, no records, no fault counts."""
    request.app[STATE_KEY].reset()
    return web.json_response({"ok": True})
