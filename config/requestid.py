"""Every HTTP request gets an id: the one nginx sends in `X-Request-ID` (its `$request_id`)
when it is a plain token, else a new one. It is on every log line of the request
(chat.observability.context) and in the response's `X-Request-ID`, so a person's report, the
balancer's log and the worker's log meet."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from chat.observability import context

_GIVEN = re.compile(r"[A-Za-z0-9._-]{8,128}")


def request_id(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _GIVEN.fullmatch(given) else f"req_{secrets.token_hex(8)}"


class RequestIdMiddleware:
    """First in MIDDLEWARE, so everything after it logs with the id."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        rid = request_id(request)
        context.bind(request_id=rid)
        response: HttpResponseBase = self.get_response(request)
        response["X-Request-ID"] = rid
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        rid = request_id(request)
        context.bind(request_id=rid)
        response: HttpResponseBase = await self.get_response(request)
        response["X-Request-ID"] = rid
        return response
