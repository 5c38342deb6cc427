"""The API views: thin, like the consumer. They authenticate, parse through `chat.protocol`,
and hand the command to the worker's services; the streams are async generators whose
`finally` leaves the room (or stops a direct answer) when the client goes away."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from functools import wraps
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt

from chat import protocol
from chat.answers.runner import AnswerRunner, new_id
from chat.api import sse
from chat.api.auth import authenticate
from chat.api.direct import (
    DIRECT_ROOM,
    DIRECT_ROOM_LIMIT,
    DirectAnswer,
    answer_events,
    default_assistant,
)
from chat.api.errors import ApiError
from chat.api.member import RoomMember
from chat.background import detached
from chat.identity import Identity
from chat.models import Message
from chat.protocol import ProtocolError, dumps
from chat.realtime.worker import Worker, get_worker

logger = logging.getLogger(__name__)

AsyncView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def api_view(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """Allow `methods` only (405 otherwise), turn `ApiError` and `ProtocolError` into JSON
    error responses, and leave CSRF to `chat.api.auth` (token requests are exempt)."""

    def decorate(view: AsyncView) -> AsyncView:
        @wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = ApiError("method_not_allowed", f"Use {' or '.join(methods)}.").response()
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return await view(request, *args, **kwargs)
            except ProtocolError as err:
                return ApiError.from_protocol(err).response()
            except ApiError as err:
                return err.response()
            except Exception:
                logger.exception("API request %s %s failed", request.method, request.path)
                return ApiError("internal", "Something went wrong.").response()

        return csrf_exempt(wrapped)

    return decorate


def _check_room(room: str) -> None:
    if not protocol.is_room_name(room):
        raise ApiError("not_found", "A room name is 1 to 64 characters of A-Z a-z 0-9 _ -.")


def _after(request: HttpRequest) -> int | None:
    """The resume cursor: the `Last-Event-ID` header (an `EventSource` reconnecting), else
    `?after=`; None when absent or not a non-negative integer (then a full welcome)."""
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after")
    try:
        after = int(raw) if raw is not None else -1
    except ValueError:
        return None
    return after if after >= 0 else None


def _parse(
    request: HttpRequest, kind: str, fields: dict[str, Any] | None = None
) -> protocol.Command:
    """The command a WebSocket frame of type `kind` with the body's fields would be: the same
    parser, so the same error codes. `fields` (from the URL) win over the body's."""
    frame: dict[str, Any] = {}
    if fields is None:
        too_long = ApiError("too_long", f"The body is over {settings.CHAT_MAX_FRAME_BYTES} bytes.")
        try:
            body = request.body
        except RequestDataTooBig:  # Over Django's DATA_UPLOAD_MAX_MEMORY_SIZE.
            raise too_long from None
        if len(body) > settings.CHAT_MAX_FRAME_BYTES:
            raise too_long
        frame = protocol.load_json_object(body, what="body")
    frame = {**frame, **(fields or {}), "type": kind}
    return protocol.parse_frame(frame, max_chars=settings.CHAT_MAX_QUESTION_CHARS)


def _parse_ask(request: HttpRequest) -> protocol.Ask:
    command = _parse(request, "ask")
    if not isinstance(command, protocol.Ask):  # The parser maps "ask" to Ask.
        raise TypeError(f"parsed {command!r} for an ask")
    return command


def _runner(worker: Worker) -> AnswerRunner:
    if worker.runner is None:  # Set by Worker.start, before get_worker() returns it.
        raise RuntimeError("The worker has no answer runner.")
    return worker.runner


def _take_ask_token(worker: Worker, identity: Identity) -> None:
    """The WebSocket's ask rate limit: one bucket per person, shared with their sockets."""
    wait = worker.ask_buckets.take(identity.id)
    if wait:
        raise ProtocolError(
            "rate_limited", "You are asking too fast; try again shortly.", retry_after=wait
        )


@database_sync_to_async
def _existing_question(room: str, identity: Identity, client_id: str | None) -> str | None:
    row = (
        Message.objects.filter(room__name=room, user_id=identity.id, client_id=client_id or "")
        .values_list("id", flat=True)
        .first()
    )
    return row


@api_view("GET")
async def room_events(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>/events`: the room as Server-Sent Events, from a `welcome` on."""
    _check_room(room)
    identity = await authenticate(request, write=False)
    get_token(request)  # Sets the csrftoken cookie: a browser reader can POST next.
    worker = await detached(get_worker())
    member = RoomMember(
        worker,
        room,
        identity,
        after=_after(request),
        transport_pending=getattr(request, "scope", {}).get("chat.transport_pending"),
        label=f"{room}/{identity.name} (sse)",
    )
    return sse.response(_room_stream(member))


async def _room_stream(member: RoomMember) -> AsyncIterator[bytes]:
    yield sse.retry()
    try:
        async with aclosing(member.frames(idle=settings.CHAT_SSE_KEEPALIVE_SECONDS)) as frames:
            async for frame in frames:
                yield sse.KEEP_ALIVE if frame is None else sse.frame_event(frame)
    except Exception:
        logger.exception("Event stream of %s failed", member.conn.label)
        return
    if member.close_code is not None:
        yield sse.comment(f"closed {member.close_code}: reconnect with Last-Event-ID")


@api_view("POST")
async def post_question(request: HttpRequest, room: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/questions`: the WebSocket's `ask`. 202 with the question's id;
    200 with `duplicate: true` and the first question's id for a repeated `client_id`."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_ask(request)
    worker = await detached(get_worker())
    _take_ask_token(worker, identity)
    question_id = await detached(_runner(worker).ask(room, identity, command))
    if question_id is None:
        existing = await _existing_question(room, identity, command.client_id)
        return JsonResponse({"id": existing, "duplicate": True}, status=200)
    return JsonResponse({"id": question_id}, status=202)


@api_view("POST")
async def cancel_answer(request: HttpRequest, room: str, answer_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/answers/<id>/cancel`: the WebSocket's `cancel` (asker or staff).
    202: the answer ends as `cancelled` in the room (at once if it already ended)."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse(request, "cancel", {"answer_id": answer_id})
    if not isinstance(command, protocol.Cancel):  # The parser maps "cancel" to Cancel.
        raise TypeError(f"parsed {command!r} for a cancel")
    worker = await detached(get_worker())
    await detached(_runner(worker).cancel(room, identity, command.answer_id))
    return JsonResponse({"id": command.answer_id}, status=202)


@api_view("POST")
async def ask(request: HttpRequest) -> HttpResponseBase:
    """`POST /api/ask`: one question outside any room, its answer streamed as events, then
    `data: [DONE]`. Rate-limited like `ask`; counts against the asker's running answers."""
    identity = await authenticate(request, write=True)
    command = _parse_ask(request)
    worker = await detached(get_worker())
    _take_ask_token(worker, identity)
    answer_id = new_id("a")
    events = answer_events(default_assistant(), command.text, answer_id=answer_id)
    reserved = await worker.coordinator.reserve_answer(
        DIRECT_ROOM,
        identity.id,
        answer_id,
        max_per_user=settings.CHAT_MAX_ANSWERS_PER_USER,
        max_per_room=DIRECT_ROOM_LIMIT,
    )
    if not reserved:
        raise ProtocolError("busy", "Too many answers are being written; wait for one to finish.")
    # Started now, not when the response is first read: its task owns the reservation.
    answer = DirectAnswer(
        events,
        coordinator=worker.coordinator,
        user_id=identity.id,
        answer_id=answer_id,
    )
    answer.start()
    return sse.response(_direct_stream(answer))


async def _direct_stream(answer: DirectAnswer) -> AsyncIterator[bytes]:
    async with aclosing(answer.events(idle=settings.CHAT_SSE_KEEPALIVE_SECONDS)) as events:
        async for event in events:
            if event is None:
                yield sse.KEEP_ALIVE
            else:
                yield sse.event(dumps(event), kind=event["type"])
    yield sse.DONE


@api_view("GET", "POST")
async def not_found(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Any other path under `/api/`: a JSON 404, not the site's HTML page."""
    raise ApiError("not_found", "There is no such API endpoint (see docs/http-api.md).")
