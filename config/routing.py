"""Routing of the ASGI application as Channels' `ProtocolTypeRouter` and `URLRouter` do, but
returning the application's coroutine instead of awaiting it. Channels' routers, and the
`as_asgi()` wrapper `URLRouter` awaits, are coroutines that stay in every socket's chain of
awaits for its whole life, `URLRouter`'s holding a copy of the scope besides the one it passes
on: about 1.5 KiB per idle socket (docs/benchmarks.md, "Memory per idle connection").
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from django.urls import URLPattern
from django.urls.exceptions import Resolver404


class ProtocolRouter:
    """An application per scope type (`http`, `websocket`); another type is an error."""

    # A plain callable returning a coroutine: tell asgiref (daphne, the test communicators)
    # it is an ASGI 3 application.
    _asgi_single_callable = True

    def __init__(self, applications: dict[str, Any]) -> None:
        self.applications = applications

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        application = self.applications.get(scope["type"])
        if application is None:
            return _refuse(f"No application configured for scope type {scope['type']!r}")
        return application(scope, receive, send)


class SocketRouter:
    """The outermost router of the sockets: each route an endpoint (`re_path` or `path` to a
    consumer's `as_asgi()` or an ASGI application), no nested routers. The scope the
    application gets is Channels': `path_remaining` and `url_route` (`args`, `kwargs`)."""

    _asgi_single_callable = True

    def __init__(self, routes: Sequence[URLPattern]) -> None:
        self.routes = list(routes)

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        path = scope.get("path")
        if path is None:
            return _refuse("No 'path' key in connection scope, cannot route URLs")
        root_path = scope.get("root_path", "")
        if root_path and not path.startswith(root_path):
            return _refuse(f"No route found for path {path!r}.")
        # Without the leading slash, as Django (and URLRouter) match.
        path = path[len(root_path) :].lstrip("/")
        for route in self.routes:
            try:
                match = route.pattern.match(path)
            except Resolver404:
                continue
            if not match:
                continue
            remaining, args, kwargs = match
            scope = dict(
                scope,
                path_remaining=remaining,
                url_route={"args": args, "kwargs": {**kwargs, **route.default_args}},
            )
            app: Any = route.callback
            consumer_class = getattr(app, "consumer_class", None)
            if consumer_class is not None:
                # What `as_asgi()`'s wrapper does, without its frame: one consumer per socket.
                return consumer_class(**app.consumer_initkwargs)(scope, receive, send)
            return app(scope, receive, send)
        return _refuse(f"No route found for path {path!r}.")


async def _refuse(reason: str) -> None:
    # Raised from the application's coroutine, where Channels' routers raise it: daphne logs
    # it and closes the handshake, as before.
    raise ValueError(reason)
