"""config.frames: the text frame built once per event is byte for byte what autobahn sends, it
is used only where autobahn would send exactly that, and writing it at once keeps the socket's
bytes in order whatever Twisted still holds (the real path through daphne is every other
WebSocket test's)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport

from config.frames import sends_plain_frames, text_frame, write_now

# Each size crosses one of the frame header's length forms: 7 bits, 16 bits, 64 bits.
SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70000)


def _open_protocol(**options: Any) -> tuple[Any, StringTransport]:
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(**options)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state = protocol.STATE_OPEN
    return protocol, transport


@pytest.mark.parametrize("size", SIZES)
def test_the_frame_is_what_autobahn_sends(size: int) -> None:
    payload = ("가" * size).encode()[:size]
    protocol, transport = _open_protocol()
    protocol.sendMessage(payload, False)
    assert text_frame(payload) == transport.value()


def test_plain_frames_only_where_autobahn_sends_them() -> None:
    protocol, _ = _open_protocol(maxMessagePayloadSize=1000, autoFragmentSize=500)
    assert sends_plain_frames(protocol, 500)
    assert not sends_plain_frames(protocol, 501)  # autobahn would fragment it
    protocol, _ = _open_protocol(maxMessagePayloadSize=1000)
    assert sends_plain_frames(protocol, 1000)
    assert not sends_plain_frames(protocol, 1001)  # autobahn refuses it: let it say so
    protocol, _ = _open_protocol()
    protocol._perMessageCompress = object()  # permessage-deflate negotiated
    assert not sends_plain_frames(protocol, 10)
    protocol, _ = _open_protocol()
    protocol.send_queue.append((b"queued", False))
    assert not sends_plain_frames(protocol, 10)
    protocol, _ = _open_protocol()
    protocol.logFrames = True  # autobahn's per-frame log (its debug mode)
    assert not sends_plain_frames(protocol, 10)


class _Transport:
    """Twisted's write buffer as `write_now` reads it, over a real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.connected = True
        self.disconnecting = False
        self._writeDisconnected = False
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self._tempDataLen += len(data)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def _read(sock: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        got += sock.recv(size - len(got))
    return got


def test_written_at_once_when_nothing_waits(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    transport = _Transport(ours)
    frame = text_frame(b'{"type":"answer.delta"}')
    write_now(transport, frame)
    assert transport.written == []
    assert _read(theirs, len(frame)) == frame


def test_behind_what_twisted_holds(pair: tuple[socket.socket, socket.socket]) -> None:
    """Bytes Twisted has not sent yet go first: the frame joins them in its buffer."""
    ours, theirs = pair
    transport = _Transport(ours)
    transport.write(b"earlier")
    frame = text_frame(b"later")
    write_now(transport, frame)
    assert transport.written == [b"earlier", frame]
    theirs.settimeout(0.2)
    with pytest.raises(TimeoutError):  # nothing went to the socket around Twisted's buffer
        theirs.recv(1)


def test_what_the_kernel_does_not_take_goes_to_twisted(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = _Transport(ours)
    frame = text_frame(bytes(range(256)) * 4096)  # 1 MiB: more than the socket takes
    write_now(transport, frame)
    assert len(transport.written) == 1
    rest = transport.written[0]
    assert 0 < len(rest) < len(frame)
    sent = len(frame) - len(rest)
    assert _read(theirs, sent) + rest == frame


def test_a_failed_socket_is_left_to_twisted(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.close()
    ours.shutdown(socket.SHUT_WR)  # sending now fails (EPIPE)
    transport = _Transport(ours)
    frame = text_frame(b"lost")
    write_now(transport, frame)
    assert transport.written == [frame]


def test_a_closing_transport_is_left_to_twisted(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    transport = _Transport(ours)
    transport.disconnecting = True
    write_now(transport, text_frame(b"x"))
    assert transport.written == [text_frame(b"x")]
