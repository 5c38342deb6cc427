"""What one client process checks as frames arrive: each member's events stitched across its
reconnections, and each room's events as all its members saw them. Plain logic, no I/O.

A member's *session* runs from a fresh join (no `after`) to its leave; within it, every
reconnection resumes with `after=<cursor>`. The rules (docs/protocol.md, "Joining and resuming"):

- the events of a session run consecutively: each seq is the cursor + 1 (else a `gap`, or a
  `repeat` of a seq already seen, or a `reorder`);
- a resumed `welcome` has `seq` == `after`; a full one (the server no longer held the events)
  never goes back, and its history must agree with what the member saw so far;
- for every answer a member saw from `answer.start` (or from a welcome's `streaming` history
  item) to `answer.end`, the deltas joined (after that text) are the end's text;
- every member of a room saw the same event under the same seq, and each answer started and
  ended once.

Broken rules are counted in a `Tally` (with the first few examples): the soak expects none.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Frame = dict[str, Any]

# Kinds of violation, in the order the report lists them.
MEMBER_KINDS = (
    "gap",
    "repeat",
    "reorder",
    "event_before_welcome",
    "resume_seq_mismatch",
    "welcome_went_back",
    "history_mismatch",
    "text_mismatch",
    "delta_before_sources",
    "delta_of_unknown_answer",
    "event_after_end",
)
ROOM_KINDS = ("seq_conflict", "start_twice", "end_twice", "unended", "unanswered", "behind_at_end")
EXAMPLES = 8


def digest(text: str) -> str:
    """A short fingerprint of an answer's text (what the client and the database compare)."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def frame_digest(frame: Frame) -> bytes:
    """The event's fingerprint: the same seq must carry the same event for every member."""
    canonical = json.dumps(frame, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=8).digest()


@dataclass
class Tally:
    """Violations by kind, with the first `EXAMPLES` of each (room, member, seqs, what)."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, kind: str, **detail: Any) -> None:
        self.counts[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < EXAMPLES:
            shown.append(detail)

    def merge(self, other: Tally) -> None:
        for kind, count in other.counts.items():
            self.counts[kind] += count
            shown = self.examples.setdefault(kind, [])
            shown.extend(other.examples.get(kind, [])[: EXAMPLES - len(shown)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class AnswerSeen:
    """An answer as its room's members saw it (any member: they must agree, by seq)."""

    start_seq: int | None = None
    question_id: str | None = None
    end_seqs: list[int] = field(default_factory=list)
    status: str | None = None
    text_digest: str | None = None
    text_len: int = 0
    error: str | None = None
    # Member sessions that checked the deltas against the end: from the start, from a
    # welcome's history (joined while it was being written).
    checked_full: int = 0
    checked_from_history: int = 0


class RoomTrack:
    """One room as all its members in this process saw it."""

    def __init__(self, name: str, tally: Tally) -> None:
        self.name = name
        self.tally = tally
        self.events: dict[int, bytes] = {}
        self.max_seq = 0
        self.answers: dict[str, AnswerSeen] = {}
        # Question id -> (seq, client_id); client_id -> question id.
        self.questions: dict[str, tuple[int, str | None]] = {}
        self.by_client_id: dict[str, str] = {}

    def record(self, frame: Frame, member: str) -> None:
        """Note an event as one member received it; the first member to see a seq sets it."""
        seq: int = frame["seq"]
        fingerprint = frame_digest(frame)
        known = self.events.get(seq)
        if known is not None:
            if known != fingerprint:
                self.tally.add("seq_conflict", room=self.name, seq=seq, member=member, frame=frame)
            return
        self.events[seq] = fingerprint
        self.max_seq = max(self.max_seq, seq)
        kind = frame["type"]
        if kind == "question":
            self.questions[frame["id"]] = (seq, frame.get("client_id"))
            if frame.get("client_id"):
                self.by_client_id[frame["client_id"]] = frame["id"]
        elif kind == "answer.start":
            seen = self.answers.setdefault(frame["id"], AnswerSeen())
            if seen.start_seq is not None:
                self.tally.add(
                    "start_twice", room=self.name, answer=frame["id"], seqs=[seen.start_seq, seq]
                )
            seen.start_seq = seq
            seen.question_id = frame.get("question_id")
        elif kind == "answer.end":
            seen = self.answers.setdefault(frame["answer_id"], AnswerSeen())
            seen.end_seqs.append(seq)
            if len(seen.end_seqs) > 1:
                self.tally.add(
                    "end_twice", room=self.name, answer=frame["answer_id"], seqs=seen.end_seqs[:]
                )
            seen.status = frame.get("status")
            seen.text_digest = digest(frame.get("text") or "")
            seen.text_len = len(frame.get("text") or "")
            if frame.get("error"):
                seen.error = str(frame["error"].get("code"))

    def open_work(self) -> tuple[list[str], list[str]]:
        """(answers started and not ended, questions posted without an answer.start)."""
        unended = [a for a, seen in self.answers.items() if seen.start_seq and not seen.end_seqs]
        answered = {seen.question_id for seen in self.answers.values()}
        unanswered = [q for q in self.questions if q not in answered]
        return unended, unanswered


@dataclass
class _View:
    """An answer a member is watching: its text so far, and how the member came to it."""

    parts: list[str]
    from_history: bool
    sources: bool


class MemberTrack:
    """One member session's stitched view of its room (see the module docstring)."""

    def __init__(self, room: RoomTrack, label: str) -> None:
        self.room = room
        self.label = label
        self.cursor: int | None = None
        self.views: dict[str, _View] = {}
        self.ended: set[str] = set()
        self.events = 0

    def _add(self, kind: str, **detail: Any) -> None:
        self.room.tally.add(kind, room=self.room.name, member=self.label, **detail)

    def on_welcome(self, frame: Frame, after: int | None) -> None:
        """A welcome, on a fresh join (`after` None) or on a resume with `after`."""
        seq: int = frame["seq"]
        if after is not None and frame.get("resumed"):
            if seq != after:
                self._add("resume_seq_mismatch", after=after, welcome_seq=seq)
                self.cursor = seq
            return
        # A full welcome on a resume: the server no longer held our events (or their backlog
        # was too large). It may skip ahead, never back.
        if after is not None and self.cursor is not None and seq < self.cursor:
            self._add("welcome_went_back", cursor=self.cursor, welcome_seq=seq)
        self._from_history(frame.get("history") or [], seq)
        self.cursor = seq

    def _from_history(self, history: list[Frame], seq: int) -> None:
        """Take the answers being written from the history (a welcome at `seq`); check it
        against what this member and the room saw."""
        views: dict[str, _View] = {}
        for item in history:
            if item.get("role") != "assistant":
                continue
            answer_id, text = item["id"], item.get("text") or ""
            ours = self.views.get(answer_id)
            if ours is not None and not text.startswith("".join(ours.parts)):
                self._add("history_mismatch", answer=answer_id, what="text so far not a prefix")
            seen = self.room.answers.get(answer_id)
            if item.get("status") == "streaming":
                if seen is not None and seen.end_seqs and min(seen.end_seqs) <= seq:
                    self._add("history_mismatch", answer=answer_id, what="streaming after its end")
                views[answer_id] = _View(parts=[text], from_history=True, sources=True)
                continue
            ended = seen is not None and seen.text_digest is not None
            if ended and (seen.status, seen.text_digest) != (item.get("status"), digest(text)):
                self._add(
                    "history_mismatch",
                    answer=answer_id,
                    what=f"history {item.get('status')} {len(text)} chars, "
                    f"end {seen.status} {seen.text_len} chars",
                )
        self.views = views

    def before_welcome(self, frame: Frame) -> None:
        """A room event that came before the connection's welcome: never applied."""
        self._add("event_before_welcome", seq=frame["seq"], type=frame["type"])

    def on_event(self, frame: Frame) -> None:
        """A room event (a frame with a seq), in the order it arrived."""
        seq: int = frame["seq"]
        if self.cursor is None:
            self._add("event_before_welcome", seq=seq)
            self.cursor = seq - 1
        if seq <= self.cursor:
            # Already had it (repeat) or it comes after a later one (reorder): not applied.
            kind = "repeat" if self.room.events.get(seq) == frame_digest(frame) else "reorder"
            self._add(kind, seq=seq, cursor=self.cursor, type=frame["type"])
            return
        if seq != self.cursor + 1:
            self._add("gap", expected=self.cursor + 1, got=seq, type=frame["type"])
        self.cursor = seq
        self.events += 1
        self.room.record(frame, self.label)
        kind = frame["type"]
        if kind == "answer.start":
            self.views[frame["id"]] = _View(parts=[], from_history=False, sources=False)
        elif kind in ("answer.sources", "answer.delta", "answer.end"):
            self._answer_event(kind, frame, seq)

    def _answer_event(self, kind: str, frame: Frame, seq: int) -> None:
        answer_id = frame["answer_id"]
        if answer_id in self.ended:
            self._add("event_after_end", seq=seq, answer=answer_id, type=kind)
            return
        view = self.views.get(answer_id)
        if view is None:
            self._add("delta_of_unknown_answer", seq=seq, answer=answer_id, type=kind)
            return
        if kind == "answer.sources":
            view.sources = True
        elif kind == "answer.delta":
            if not view.sources:
                self._add("delta_before_sources", seq=seq, answer=answer_id)
                view.sources = True
            view.parts.append(frame["text"])
        else:
            del self.views[answer_id]
            self.ended.add(answer_id)
            joined, text = "".join(view.parts), frame.get("text") or ""
            if joined != text:
                at = next(
                    (i for i, (a, b) in enumerate(zip(joined, text, strict=False)) if a != b),
                    min(len(joined), len(text)),
                )
                self._add(
                    "text_mismatch",
                    seq=seq,
                    answer=answer_id,
                    deltas_chars=len(joined),
                    end_chars=len(text),
                    first_difference=at,
                    from_history=view.from_history,
                )
            seen = self.room.answers[answer_id]
            if view.from_history:
                seen.checked_from_history += 1
            else:
                seen.checked_full += 1
