"""A text frame built once for every member of a room and written to each socket at once.

What daphne does per frame and member, through autobahn and Twisted: `sendMessage` checks its
arguments, counts traffic and builds the frame's header again for every member; its `sendData`
formats the arguments of a debug log call; and Twisted's `transport.write` never writes: it
buffers the bytes and asks the reactor to call back when the socket is writable, which is an
epoll change, a turn of the loop, two logging contexts and another epoll change, per frame. At
200 members and 50 deltas a second that was most of a worker's CPU (py-spy, docs/benchmarks.md
"Frames written at once").

Here, when autobahn would send exactly an unmasked, unfragmented, uncompressed text frame and
Twisted holds nothing unsent for the socket, the frame's bytes (built once per event, like its
UTF-8) go to the socket with one `send`; what the kernel does not take, and every other case,
goes through Twisted as before, so the socket's bytes stay in order and Twisted still notices a
socket that failed.
"""

from __future__ import annotations

import struct
from typing import Any

_FIN_TEXT = 0x81  # FIN bit and opcode 1 (text): a whole message in one frame (RFC 6455 5.2)


def text_frame(payload: bytes) -> bytes:
    """A server's text frame carrying `payload`: not masked (servers never mask), one frame."""
    length = len(payload)
    if length < 126:
        header = bytes((_FIN_TEXT, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, length)
    return header + payload


def sends_plain_frames(protocol: Any, length: int) -> bool:
    """Whether autobahn would put exactly `text_frame(payload)` on the wire for a payload of
    `length` bytes: no compression negotiated, no masking, no fragmenting, under the message
    size limit, nothing queued in autobahn, and no per-frame logging or timing asked for."""
    limit = protocol.maxMessagePayloadSize
    fragment = protocol.autoFragmentSize
    return (
        protocol._perMessageCompress is None
        and not protocol.maskServerFrames
        and not (0 < limit < length)
        and not (0 < fragment < length)
        and not protocol.send_queue
        and not protocol.logOctets
        and not protocol.logFrames
        and not protocol.trackedTimings
    )


def write_now(transport: Any, frame: bytes) -> None:
    """`frame` to the socket now if Twisted holds nothing unsent for it; the rest, or all of
    it, through Twisted's buffer (which keeps the order and reports a failed socket)."""
    unsent = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    if unsent or not transport.connected or transport.disconnecting or transport._writeDisconnected:
        transport.write(frame)
        return
    try:
        sent = transport.socket.send(frame)
    except OSError:  # would block, or the socket failed: Twisted's write finds out which
        sent = 0
    if sent < len(frame):
        transport.write(frame[sent:])
