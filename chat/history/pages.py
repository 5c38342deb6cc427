"""Reading a room's history beyond its `welcome`: pages of messages before a seq, and search.

A message's place is the seq of the event that posted it (`question`, `message`,
`answer.start`). An answer stores that seq with its end, so one still being written (or one
the database never got the end of) takes its question's place instead. A page is every
message whose place is below the cursor, newest first up to the page size, and then any
others sharing the last one's place (a question and its seq-less answer are never split):
the next page starts below that place, so no message is given twice or skipped, however many
arrive meanwhile (they all take places above every cursor already handed out).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from django.db.models import F, QuerySet, TextField, Value
from django.db.models.functions import Coalesce, Lower, Replace

from chat import storage
from chat.history import readable_room
from chat.identity import Identity
from chat.models import Message
from chat.protocol import ProtocolError

PAGE_DEFAULT: Final = 50
PAGE_MAX: Final = 200  # a larger `limit` is clamped to this (docs/http-api.md)
SEARCH_MAX_CHARS: Final = 100
SEARCH_RESULTS_MAX: Final = 50
_SPACES: Final = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Page:
    """Messages as `history` items, oldest first; `before`: the cursor of the page before this
    one (None when this page reaches the room's beginning)."""

    messages: list[dict[str, Any]]
    before: int | None

    def to_wire(self) -> dict[str, Any]:
        return {"messages": self.messages, "before": self.before}


def clamp_limit(limit: int | None, *, default: int = PAGE_DEFAULT, most: int = PAGE_MAX) -> int:
    """The page size asked for, between 1 and `most` (a larger one is clamped, not refused)."""
    if limit is None:
        return default
    return max(1, min(limit, most))


def _placed(room_messages: QuerySet[Message]) -> Any:
    """Messages with their `place` (typed Any: the stubs do not follow annotations)."""
    return room_messages.annotate(place=Coalesce(F("seq"), F("question__seq"))).filter(
        place__isnull=False
    )


def page(room_name: str, identity: Identity, *, before: int | None, limit: int) -> Page:
    """The messages before `before` (None: the latest), up to `limit` of them (see the module
    docstring for the edges). `not_found` where `identity` may not read the room."""
    room = readable_room(room_name, identity)
    if room is None:
        return Page(messages=[], before=None)
    placed: Any = _placed(Message.objects.filter(room=room)).select_related("feedback_count")
    if before is not None:
        placed = placed.filter(place__lt=before)
    rows = list(placed.order_by("-place", "-created", "-id")[:limit])
    if len(rows) == limit:
        edge = rows[-1].place
        taken = {row.id for row in rows}
        rows += [
            row
            for row in placed.filter(place=edge).order_by("-created", "-id")
            if row.id not in taken
        ]
    if not rows:
        return Page(messages=[], before=None)
    oldest = min(row.place for row in rows)
    more = placed.filter(place__lt=oldest).exists()
    rows.sort(key=lambda row: (row.place, row.created, row.id))
    return Page(messages=[_item(row) for row in rows], before=oldest if more else None)


def _item(message: Any) -> dict[str, Any]:
    item = storage.to_history(message)
    item.setdefault("seq", message.place)
    return item


def normalise_query(query: str) -> str:
    """What a search looks for: the query in Unicode NFC (Korean typed on some systems arrives
    as separate jamo, NFD), lower case, without spaces; `invalid` / `too_long` otherwise."""
    query = unicodedata.normalize("NFC", query).strip()
    if not query:
        raise ProtocolError("invalid", "Give something to search for (`q`).")
    if len(query) > SEARCH_MAX_CHARS:
        raise ProtocolError("too_long", f"A search is at most {SEARCH_MAX_CHARS} characters.")
    if "\x00" in query:
        raise ProtocolError("invalid", "`q` must not contain NUL characters.")
    return _SPACES.sub("", query).lower()


def search(room_name: str, identity: Identity, query: str, *, limit: int) -> list[dict[str, Any]]:
    """Messages of the room whose text holds `query`, newest first, as `history` items.

    A substring match, as a Korean reader expects: "아메리카노" finds "아이스 아메리카노",
    and since Korean spacing varies, spaces do not count ("아이스아메리카노" finds it too);
    letter case does not count (for non-ASCII letters too on PostgreSQL; on SQLite, whose
    LOWER knows only ASCII, only for those). Removed (redacted) messages are never found.
    """
    wanted = normalise_query(query)
    room = readable_room(room_name, identity)
    if room is None:
        return []
    squashed: Any = Lower("text")
    for space in (" ", "\n", "\t", "\r"):
        squashed = Replace(squashed, Value(space), Value(""), output_field=TextField())
    rows = (
        _placed(Message.objects.filter(room=room, redacted=False))
        .select_related("feedback_count")
        .annotate(squashed=squashed)
        .filter(squashed__contains=wanted)
        .order_by("-place", "-created", "-id")[:limit]
    )
    return [_item(row) for row in rows]
