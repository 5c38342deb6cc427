"""Server-sent events, read incrementally from the bytes of a streamed HTTP response: the
`data` of each event, as bytes, for `json.loads`.

The `openai` SDK does the same and then builds a pydantic model of every chunk, which was half
of a worker's CPU at 100 answers (docs/benchmarks.md, "Fixes"). Only `data` fields matter for
chat completions; `event`, `id`, `retry` and comments are skipped, as the SDK's chat stream
ignores them too.
"""

from __future__ import annotations

# An event larger than this is no chat-completion chunk: refuse it rather than buffer without
# end what a broken or hostile server sends without a line break.
MAX_EVENT_BYTES = 1 << 20


class EventTooLarge(ValueError):
    """The server sent more than MAX_EVENT_BYTES without ending an event."""


class SSEDataReader:
    """Feed it the body's bytes in any pieces; get back the data of each complete event."""

    __slots__ = ("_data", "_partial", "_size", "_skip_lf")

    def __init__(self) -> None:
        self._partial = b""  # the start of a line not yet ended
        self._data: list[bytes] = []  # the data lines of the event being read
        self._size = 0
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event `chunk` completes (an event ends at a blank line)."""
        if not chunk:
            return []
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the second half of a CRLF whose CR ended the last piece
        buffer = self._partial + chunk if self._partial else chunk
        self._skip_lf = False
        if b"\r" in buffer:
            # Lines may end in CRLF or CR too.
            self._skip_lf = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._partial = lines.pop()
        events: list[bytes] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                    self._data = []
                    self._size = 0
            elif line.startswith(b"data:"):
                value = line[6:] if line.startswith(b"data: ") else line[5:]
                self._data.append(value)
                self._size += len(value)
        if self._size + len(self._partial) > MAX_EVENT_BYTES:
            raise EventTooLarge(f"an event over {MAX_EVENT_BYTES} bytes")
        return events
