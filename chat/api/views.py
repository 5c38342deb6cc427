"""The API views: thin, like the consumer. They authenticate, parse through `chat.protocol`,
and hand the command to the runtime's services; the streams are async generators whose
`finally` leaves the room (or stops a direct answer) when the client goes away."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from functools import wraps
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt

from chat import protocol, rooms
from chat.answers.direct import DirectAnswer
from chat.api import sse
from chat.api.auth import authenticate
from chat.api.errors import error_response
from chat.background import detached
from chat.history import export, feedback, pages
from chat.protocol import ProtocolError, dumps
from chat.realtime.backends import store_unavailable
from chat.realtime.member import RoomMember
from chat.rooms import configuration
from chat.rooms.configuration import public_info
from chat.runtime import get_runtime

logger = logging.getLogger(__name__)

CommandT = TypeVar("CommandT", bound=protocol.Command)

AsyncView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def api_view(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """Allow `methods` only (405 otherwise), turn `ProtocolError` into JSON
    error responses, and leave CSRF to `chat.api.auth` (token requests are exempt)."""

    def decorate(view: AsyncView) -> AsyncView:
        @wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = error_response(
                    ProtocolError("method_not_allowed", f"Use {' or '.join(methods)}.")
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return await view(request, *args, **kwargs)
            except ProtocolError as err:
                return error_response(err)
            except Exception:
                logger.exception("API request %s %s failed", request.method, request.path)
                return error_response(ProtocolError("internal", "Something went wrong."))

        return csrf_exempt(wrapped)

    return decorate


def _check_room(room: str) -> None:
    if not protocol.is_room_name(room):
        raise ProtocolError("not_found", "A room name is 1 to 64 characters of A-Z a-z 0-9 _ -.")


def _after(request: HttpRequest) -> int | None:
    """The resume cursor: the `Last-Event-ID` header (an `EventSource` reconnecting), else
    `?after=`; None when absent or not a non-negative integer (then a full welcome)."""
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after")
    try:
        after = int(raw) if raw is not None else -1
    except ValueError:
        return None
    return after if after >= 0 else None


def _address(request: HttpRequest) -> str | None:
    """The client's address as daphne gives it (X-Forwarded-For under --proxy-headers)."""
    return request.META.get("REMOTE_ADDR") or None


def _parse(
    request: HttpRequest,
    kind: str,
    fields: dict[str, Any] | None = None,
    *,
    with_body: bool | None = None,
) -> protocol.Command:
    """The command a WebSocket frame of type `kind` with the body's fields would be: the same
    parser, so the same error codes. `fields` (from the URL) win over the body's; the body is
    read when there are no such fields, or `with_body` says so."""
    read_body = with_body or (with_body is None and fields is None)
    frame = _json_body(request) if read_body else {}
    frame = {**frame, **(fields or {}), "type": kind}
    return protocol.parse_frame(
        frame,
        max_chars=settings.CHAT_MAX_QUESTION_CHARS,
        max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS,
    )


def _parse_as(
    request: HttpRequest,
    kind: str,
    command_type: type[CommandT],
    fields: dict[str, Any] | None = None,
    *,
    with_body: bool | None = None,
) -> CommandT:
    """`_parse`, typed: the parser maps `kind` to `command_type` (anything else is a bug)."""
    command = _parse(request, kind, fields, with_body=with_body)
    if not isinstance(command, command_type):
        raise TypeError(f"parsed {command!r} for a {kind}")
    return command


def _json_body(request: HttpRequest) -> dict[str, Any]:
    """The body's JSON object, at most CHAT_MAX_FRAME_BYTES (`too_long`, `bad_json`...)."""
    too_long = ProtocolError("too_long", f"The body is over {settings.CHAT_MAX_FRAME_BYTES} bytes.")
    try:
        body = request.body
    except RequestDataTooBig:  # Over Django's DATA_UPLOAD_MAX_MEMORY_SIZE.
        raise too_long from None
    if len(body) > settings.CHAT_MAX_FRAME_BYTES:
        raise too_long
    return protocol.load_json_object(body, what="body")


def _parse_ask(request: HttpRequest) -> protocol.Ask:
    command = _parse_as(request, "ask", protocol.Ask)
    return command


@api_view("GET")
async def room_events(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>/events`: the room as Server-Sent Events, from a `welcome` on."""
    _check_room(room)
    identity = await authenticate(request, write=False)
    admitted_at = time.monotonic()
    access, row = await database_sync_to_async(rooms.access_and_room)(room, identity)
    access.check_enter()
    get_token(request)  # Sets the csrftoken cookie: a browser reader can POST next.
    runtime = await detached(get_runtime())
    member = RoomMember(
        runtime.membership,
        room,
        identity,
        after=_after(request),
        transport_pending=getattr(request, "scope", {}).get("chat.transport_pending"),
        label=f"{room}/{identity.name} (sse)",
        admitted_at=admitted_at,
        access=access.to_wire(),
        room_info=public_info(row, room),
    )
    return sse.response(_room_stream(member))


async def _room_stream(member: RoomMember) -> AsyncIterator[bytes]:
    yield sse.retry()
    try:
        async with aclosing(member.frames(idle=settings.CHAT_SSE_KEEPALIVE_SECONDS)) as frames:
            async for frame in frames:
                yield sse.KEEP_ALIVE if frame is None else sse.frame_event(frame)
    except Exception as err:
        if not store_unavailable(err):
            logger.exception("Event stream of %s failed", member.conn.label)
            return
        # Redis is away: end the stream; `EventSource` comes back by itself.
        logger.warning("Event stream of %s: Redis is away (%s)", member.conn.label, err)
        yield sse.comment(f"closed {protocol.CLOSE_TRY_AGAIN}: try again shortly")
        return
    if member.close_code == protocol.CLOSE_REMOVED:
        # `EventSource` reconnects anyway, and gets the 404 that ends it.
        yield sse.comment(f"closed {member.close_code}: you were removed from this room")
    elif member.close_code is not None:
        yield sse.comment(f"closed {member.close_code}: reconnect with Last-Event-ID")


@api_view("GET", "PATCH")
async def room_settings(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>`: the room's settings and your role in it. `PATCH`: change some of
    them (owner or staff; `invalid` with each field's errors); the members are told with a
    `room.updated` event, and the next answer on every worker uses them."""
    _check_room(room)
    identity = await authenticate(request, write=request.method == "PATCH")
    if request.method == "PATCH":
        changes = configuration.json_changes(_json_body(request))
        done = await database_sync_to_async(configuration.update_settings)(room, identity, changes)
        if done.changed:
            runtime = await detached(get_runtime())
            info = configuration.public_info(done.room, room)
            await detached(runtime.room_updated(room, info))
    described = await database_sync_to_async(configuration.describe)(room, identity)
    return JsonResponse(described)


@api_view("POST")
async def post_question(request: HttpRequest, room: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/questions`: the WebSocket's `ask`. 202 with the question's id;
    200 with `duplicate: true` and the first question's id for a repeated `client_id`."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_ask(request)
    runtime = await detached(get_runtime())
    admitted = await detached(
        runtime.admission.ask(room, identity, command, address=_address(request))
    )
    if admitted.duplicate:
        return JsonResponse({"id": admitted.question_id, "duplicate": True}, status=200)
    return JsonResponse({"id": admitted.question_id}, status=202)


@api_view("POST")
async def post_message(request: HttpRequest, room: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/messages`: the WebSocket's `say`. 202 with the message's id;
    200 with `duplicate: true` and the first message's id for a repeated `client_id`."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(request, "say", protocol.Say)
    runtime = await detached(get_runtime())
    said = await detached(runtime.admission.say(room, identity, command))
    if said.duplicate:
        return JsonResponse({"id": said.message_id, "duplicate": True}, status=200)
    return JsonResponse({"id": said.message_id}, status=202)


@api_view("POST")
async def cancel_answer(request: HttpRequest, room: str, answer_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/answers/<id>/cancel`: the WebSocket's `cancel` (asker or staff).
    202: the answer ends as `cancelled` in the room (at once if it already ended)."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(request, "cancel", protocol.Cancel, {"answer_id": answer_id})
    runtime = await detached(get_runtime())
    await detached(runtime.runner.cancel(room, identity, command.answer_id))
    return JsonResponse({"id": command.answer_id}, status=202)


@api_view("POST")
async def regenerate_answer(request: HttpRequest, room: str, answer_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/answers/<id>/regenerate`: the WebSocket's `regenerate` (asker,
    moderators, staff). 202 with the new version's answer id."""
    return await _new_version(request, room, "regenerate", protocol.Regenerate, answer_id)


@api_view("POST")
async def continue_answer(request: HttpRequest, room: str, answer_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/answers/<id>/continue`: the WebSocket's `continue`. 202 with the
    continuation's answer id."""
    return await _new_version(request, room, "continue", protocol.Continue, answer_id)


async def _new_version(
    request: HttpRequest,
    room: str,
    kind: str,
    command_type: type[protocol.Regenerate] | type[protocol.Continue],
    answer_id: str,
) -> HttpResponseBase:
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(request, kind, command_type, {"answer_id": answer_id})
    runtime = await detached(get_runtime())
    new_id = await detached(
        runtime.admission.new_version(room, identity, command, address=_address(request))
    )
    return JsonResponse({"id": new_id}, status=202)


@api_view("POST")
async def edit_question(request: HttpRequest, room: str, question_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/questions/<id>/edit`: the WebSocket's `edit` (the asker only).
    202 with the edited question's id; 200 with `duplicate: true` for a repeated `client_id`."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(
        request, "edit", protocol.Edit, {"question_id": question_id}, with_body=True
    )
    runtime = await detached(get_runtime())
    admitted = await detached(
        runtime.admission.edit(room, identity, command, address=_address(request))
    )
    if admitted.duplicate:
        return JsonResponse({"id": admitted.question_id, "duplicate": True}, status=200)
    return JsonResponse({"id": admitted.question_id}, status=202)


@api_view("POST")
async def redact_message(request: HttpRequest, room: str, message_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/messages/<id>/redact`: the WebSocket's `redact` (the room's
    owner, moderators, staff). 200: the text is gone for everyone."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(request, "redact", protocol.Redact, {"id": message_id})
    runtime = await detached(get_runtime())
    redacted = await detached(runtime.moderation.redact(room, identity, command))
    return JsonResponse({"id": redacted, "redacted": True})


@api_view("POST")
async def remove_member(request: HttpRequest, room: str, user_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/members/<user id>/remove`: the WebSocket's `remove`. 200:
    stored, and their connections to the room are closing on every worker."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(request, "remove", protocol.Remove, {"user_id": user_id})
    runtime = await detached(get_runtime())
    await detached(runtime.moderation.remove(room, identity, command.user_id))
    return JsonResponse({"user_id": command.user_id, "removed": True})


@api_view("POST")
async def set_member_role(request: HttpRequest, room: str, user_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/members/<user id>/role`, body `{"role": ...}`: the WebSocket's
    `set_role`. 200; their connections to the room reconnect with their new rights."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(request, "set_role", protocol.SetRole, {"user_id": user_id}, with_body=True)
    runtime = await detached(get_runtime())
    await detached(runtime.moderation.set_role(room, identity, command.user_id, command.role))
    return JsonResponse({"user_id": command.user_id, "role": command.role})


@api_view("POST")
async def give_feedback(request: HttpRequest, room: str, answer_id: str) -> HttpResponseBase:
    """`POST /api/rooms/<room>/answers/<id>/feedback`, body `{"value": "up" | "down" | null}`:
    the WebSocket's `feedback` (anyone who may read the room). 200 with the answer's counts;
    the room gets them as an `answer.feedback` event."""
    _check_room(room)
    identity = await authenticate(request, write=True)
    command = _parse_as(
        request, "feedback", protocol.Feedback, {"answer_id": answer_id}, with_body=True
    )
    runtime = await detached(get_runtime())
    counts = await detached(runtime.feedback.give(room, identity, command))
    return JsonResponse({"answer_id": counts.answer_id, "value": command.value, **counts.to_wire()})


@api_view("GET")
async def my_feedback(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>/feedback`: your own feedback in the room, `{"mine": {id: value}}`
    (the counts are everyone's, in the history; which one is yours only you are told)."""
    _check_room(room)
    identity = await authenticate(request, write=False)
    found = await database_sync_to_async(feedback.mine)(room, identity)
    return JsonResponse({"mine": found})


def _int_param(request: HttpRequest, name: str) -> int | None:
    """A positive integer query parameter (whole string), None when absent; `invalid` else."""
    raw = request.GET.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise ProtocolError("invalid", f"`{name}` must be a positive integer.")
    return int(raw)


@api_view("GET")
async def room_history(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>/history?before=<seq>&limit=<n>`: the messages before a seq
    (without `before`: the latest), oldest first, and the cursor of the page before them."""
    _check_room(room)
    identity = await authenticate(request, write=False)
    before = _int_param(request, "before")
    limit = pages.clamp_limit(_int_param(request, "limit"))
    found = await database_sync_to_async(pages.page)(room, identity, before=before, limit=limit)
    return JsonResponse({**found.to_wire(), "limit": limit})


@api_view("GET")
async def room_search(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>/search?q=<text>&limit=<n>`: the room's messages that hold the
    text, newest first (`chat.history.pages.search` says how it matches)."""
    _check_room(room)
    identity = await authenticate(request, write=False)
    limit = pages.clamp_limit(
        _int_param(request, "limit"),
        default=pages.SEARCH_RESULTS_MAX,
        most=pages.SEARCH_RESULTS_MAX,
    )
    query = request.GET.get("q", "")
    found = await database_sync_to_async(pages.search)(room, identity, query, limit=limit)
    return JsonResponse({"q": query, "messages": found, "limit": limit})


@api_view("GET")
async def room_export(request: HttpRequest, room: str) -> HttpResponseBase:
    """`GET /api/rooms/<room>/export?format=json|md&lang=en|ko`: the whole room as a download
    (`lang`: the Markdown's own words; English when absent or unknown)."""
    _check_room(room)
    identity = await authenticate(request, write=False)
    kind = request.GET.get("format", "json")
    if kind not in ("json", "md"):
        raise ProtocolError("invalid", "`format` is `json` or `md`.")
    data = await database_sync_to_async(export.export_room)(room, identity)
    if kind == "json":
        body = json.dumps(data, ensure_ascii=False, indent=1).encode()
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
    else:
        body = export.to_markdown(data, language=request.GET.get("lang", "en")).encode()
        response = HttpResponse(body, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{room}.{kind}"'
    return response


@api_view("POST")
async def ask(request: HttpRequest) -> HttpResponseBase:
    """`POST /api/ask`: one question outside any room, its answer streamed as events, then
    `data: [DONE]`. Rate-limited like `ask`; counts against the asker's running answers."""
    identity = await authenticate(request, write=True)
    command = _parse_ask(request)
    runtime = await detached(get_runtime())
    answer = await runtime.admission.ask_direct(identity, command, address=_address(request))
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
    raise ProtocolError("not_found", "There is no such API endpoint (see docs/http-api.md).")
