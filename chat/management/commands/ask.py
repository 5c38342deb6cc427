"""`manage.py ask "question" [--room NAME] [--json]`: ask from the terminal (docs/http-api.md).

Both go through this process's own runtime and its admission, like every other transport.
Without `--room` the assistant answers outside any room, nothing stored (like `POST /api/ask`).
With `--room` the question goes into the room: stored, and appended to the room log, so with
REDIS_URL members on the servers see it live; without Redis the log is this process's own
(see the docs).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import protocol
from chat.answers.direct import DirectAnswer
from chat.identity import Identity, from_user, new_guest
from chat.protocol import ProtocolError, dumps
from chat.realtime.member import RoomMember
from chat.runtime import get_runtime, reset_runtime


class Command(BaseCommand):
    help = (
        "Ask a question and print the answer as it streams, then its sources. Exit status: "
        "0 complete, 1 the answer failed (LLM or retrieval error), 2 bad arguments."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question", help="the question (quote it)")
        parser.add_argument(
            "--room", default=None, help="ask in this room (stored, seen by its members)"
        )
        parser.add_argument(
            "--user", default=None, help="with --room: ask as this user (default: a guest)"
        )
        parser.add_argument(
            "--json", action="store_true", help="print each event as one JSON object per line"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = bool(options["json"])
        self.sources: list[dict[str, Any]] = []
        try:
            command = protocol.parse_frame(
                {"type": "ask", "text": options["question"]},
                max_chars=settings.CHAT_MAX_QUESTION_CHARS,
            )
        except ProtocolError as err:
            raise CommandError(f"{err.message} ({err.code})", returncode=2) from err
        if not isinstance(command, protocol.Ask):  # The parser maps "ask" to Ask.
            raise CommandError(f"parsed {command!r} for an ask")
        room = options["room"]
        if room is None and options["user"] is not None:
            raise CommandError("--user only applies with --room", returncode=2)
        if room is not None and not protocol.is_room_name(room):
            raise CommandError("a room name is 1 to 64 of A-Z a-z 0-9 _ -", returncode=2)
        identity = self._identity(options["user"]) if room is not None else new_guest()
        end = asyncio.run(self._ask(room, identity, command))
        self._finish(end)

    def _identity(self, username: str | None) -> Identity:
        if username is None:
            return new_guest()
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist as err:
            raise CommandError(f"no user {username!r}", returncode=2) from err
        identity = from_user(user)
        if identity is None:  # Only an anonymous user has no identity; a row never is.
            raise CommandError(f"user {username!r} cannot ask", returncode=2)
        return identity

    async def _ask(
        self, room: str | None, identity: Identity, command: protocol.Ask
    ) -> dict[str, Any] | None:
        """Ask through this process's runtime, print the answer's events, stop the runtime
        (its LLM client's HTTP pool belongs to this event loop, which ends here)."""
        try:
            runtime = await get_runtime()
            if room is None:
                return await self._direct(await runtime.admission.ask_direct(identity, command))
            return await self._in_room(room, identity, command)
        except ProtocolError as err:
            raise CommandError(f"{err.message} ({err.code})") from err
        finally:
            await reset_runtime()

    async def _direct(self, answer: DirectAnswer) -> dict[str, Any] | None:
        """Outside any room: the assistant's events, printed as they come."""
        end = None
        async with aclosing(answer.events()) as events:
            async for event in events:
                if event is None:
                    continue
                self._emit(event)
                if event["type"] == "answer.end":
                    end = event
        return end

    async def _in_room(
        self, room: str, identity: Identity, command: protocol.Ask
    ) -> dict[str, Any] | None:
        """Join the room as a member (so no event is missed), ask through the admission,
        print this question's events until its answer ends, then leave."""
        if not settings.REDIS_URL:
            self.stderr.write(
                "note: no REDIS_URL, so this process has its own room log: the answer is "
                "stored, but members connected to a running server see it only after reload."
            )
        runtime = await get_runtime()
        member = RoomMember(
            runtime.membership,
            room,
            identity,
            after=None,
            label=f"{room} (ask)",
            transport="command",
        )
        question_id: str | None = None
        answer_id: str | None = None
        async with aclosing(member.frames()) as frames:
            async for frame in frames:
                if frame is None:
                    continue
                event = json.loads(frame)
                kind = event["type"]
                if kind == "welcome":
                    admitted = await runtime.admission.ask(room, identity, command)
                    question_id, answer_id = admitted.question_id, admitted.answer_id
                elif kind in ("question", "answer.start") and event["id"] in (
                    question_id,
                    answer_id,
                ):
                    self._emit(event)
                elif answer_id is not None and event.get("answer_id") == answer_id:
                    self._emit(event)
                    if kind == "answer.end":
                        return dict(event)
        return None  # The hub closed us (e.g. the log restarted) before the end.

    def _emit(self, event: dict[str, Any]) -> None:
        """Print one event: a JSON line, or the answer's text as it streams."""
        if self.as_json:
            self.stdout.write(dumps(event))
        elif event["type"] == "answer.delta":
            self.stdout.write(event["text"], ending="")
        elif event["type"] == "answer.sources":
            self.sources = event["sources"]
        elif event["type"] == "answer.end":
            self.stdout.write("")
            if self.sources:
                self.stdout.write("\nSources:")
                for source in self.sources:
                    self.stdout.write(f"  - {source['title']} ({source['source']})")
        self.stdout.flush()

    def _finish(self, end: dict[str, Any] | None) -> None:
        if end is None:
            raise CommandError("the answer stream ended without an answer.end")
        if end["status"] != "complete":
            error = end.get("error") or {}
            detail = f": {error.get('message')} ({error.get('code')})" if error else ""
            raise CommandError(f"the answer ended {end['status']}{detail}")
