"""After the soak: what the client processes saw, put together, against what PostgreSQL stored
and what Redis still holds once everyone left.

- Every answer members saw end ended `complete` (nothing here makes one fail: the simulator
  never faults, no worker dies, Redis is away for less than CHAT_LOG_OUTAGE_SECONDS).
- Every answer a member saw end has a `chat_message` row with the same status, text and end
  seq; none is left `streaming`; no answer row is unknown to the members.
- Every question the members were told was posted is stored with its seq; a question stored
  but never posted (the ask reached the database, not the room) is counted.
- Redis: the rooms' seq is the last one members saw; no presence entry and no live answer is
  left once every member closed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import redis

from bench.soak.plan import SoakJobResult
from bench.soak.tracker import Tally, digest

DB_KINDS = (
    "not_complete",
    "db_missing",
    "db_status",
    "db_text",
    "db_end_seq",
    "db_streaming",
    "db_unseen_answer",
    "question_stored_not_posted",
    "room_seq_mismatch",
    "presence_left",
    "live_answer_left",
)


def merge(results: list[SoakJobResult]) -> dict[str, Any]:
    tally = Tally()
    counters: Counter[str] = Counter()
    rooms: dict[str, dict[str, Any]] = {}
    for result in results:
        tally.merge(result.tally)
        counters.update(result.counters)
        rooms.update(result.rooms)
    return {"tally": tally, "counters": counters, "rooms": rooms}


def answer_rows(database_url: str, rooms: list[str]) -> dict[str, dict[str, Any]]:
    query = """
        select m.id, r.name, m.role, m.status, m.text, m.seq, m.end_seq, m.client_id,
               m.error
        from chat_message m join chat_room r on r.id = m.room_id
        where r.name = any(%s)
    """
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(query, (rooms,)).fetchall()
    columns = ("id", "room", "role", "status", "text", "seq", "end_seq", "client_id", "error")
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows}


def check_database(
    tally: Tally, rooms: dict[str, dict[str, Any]], rows: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Compare every answer members saw with its row; returns counts for the report."""
    seen_ids: set[str] = set()
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    compared = 0
    for room, data in rooms.items():
        for answer_id, seen in data["answers"].items():
            seen_ids.add(answer_id)
            if not seen["end_seqs"]:
                continue  # counted as unended by the clients
            statuses[seen["status"]] += 1
            if seen["error"]:
                errors[seen["error"]] += 1
            if seen["status"] != "complete":
                # Nothing here fails: the simulator never faults, no worker dies, and Redis is
                # never away for as long as CHAT_LOG_OUTAGE_SECONDS.
                tally.add(
                    "not_complete",
                    room=room,
                    answer=answer_id,
                    status=seen["status"],
                    error=seen["error"],
                    end_seq=seen["end_seqs"][0],
                )
            row = rows.get(answer_id)
            if row is None:
                tally.add("db_missing", room=room, answer=answer_id)
                continue
            compared += 1
            if row["status"] != seen["status"]:
                tally.add(
                    "db_status", room=room, answer=answer_id, db=row["status"], seen=seen["status"]
                )
            if digest(row["text"]) != seen["text_digest"]:
                tally.add(
                    "db_text",
                    room=room,
                    answer=answer_id,
                    db_chars=len(row["text"]),
                    seen_chars=seen["text_len"],
                )
            if row["end_seq"] is not None and row["end_seq"] != seen["end_seqs"][0]:
                tally.add(
                    "db_end_seq",
                    room=room,
                    answer=answer_id,
                    db=row["end_seq"],
                    seen=seen["end_seqs"][0],
                )
    for row in rows.values():
        if row["role"] == "assistant":
            if row["status"] == "streaming":
                tally.add("db_streaming", room=row["room"], answer=row["id"])
            elif row["id"] not in seen_ids:
                tally.add("db_unseen_answer", room=row["room"], answer=row["id"])
        elif row["role"] == "user" and row["seq"] is None:
            tally.add(
                "question_stored_not_posted",
                room=row["room"],
                question=row["id"],
                client_id=row["client_id"],
            )
    return {
        "answers_compared": compared,
        "answer_statuses": dict(statuses),
        "answer_errors": dict(errors),
        "rows": len(rows),
        "answer_rows": sum(1 for row in rows.values() if row["role"] == "assistant"),
        "question_rows": sum(1 for row in rows.values() if row["role"] == "user"),
    }


def check_redis(tally: Tally, client: redis.Redis, rooms: dict[str, dict[str, Any]]) -> None:
    """Once every member closed: each room's seq is the last members saw, and nothing of
    theirs is left (presence entries, live answers)."""
    names = sorted(rooms)
    with client.pipeline(transaction=False) as pipe:
        for room in names:
            pipe.get(f"chat:room:{{{room}}}:seq")
            pipe.hlen(f"chat:presence:{room}")
            pipe.scard(f"chat:room:{{{room}}}:live")
        replies = pipe.execute()
    for index, room in enumerate(names):
        seq, presence, live = replies[3 * index : 3 * index + 3]
        seen = rooms[room]["max_seq"]
        if seq is not None and int(seq) != seen:
            tally.add("room_seq_mismatch", room=room, redis=int(seq), members_saw=seen)
        if presence > 1:  # the "#n" counter alone is no member
            tally.add("presence_left", room=room, entries=presence - 1)
        if live:
            tally.add("live_answer_left", room=room, answers=live)
