"""The provider's own reading of a streamed response: server-sent events from bytes in any
pieces, and each chunk's JSON (chat/llm/sse.py, `_read_chunk`)."""

from __future__ import annotations

import json

import pytest

from chat.errors import LLMError
from chat.llm.base import Usage
from chat.llm.openai_provider import _read_chunk
from chat.llm.sse import MAX_EVENT_BYTES, EventTooLarge, SSEDataReader

BODY = (
    b": a comment\n\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"\xec\x95\x88\xeb\x85\x95"}}]}\n\n'
    b"event: ignored\nid: 7\nretry: 10\n"
    b'data: {"a":\n'
    b"data: 1}\n\n"
    b"data:[DONE]\n\n"
)
EVENTS = [
    '{"choices":[{"index":0,"delta":{"content":"안녕"}}]}'.encode(),
    b'{"a":\n1}',
    b"[DONE]",
]


def read(pieces: list[bytes]) -> list[bytes]:
    reader = SSEDataReader()
    return [data for piece in pieces for data in reader.feed(piece)]


def test_events_whole_and_split_at_every_byte() -> None:
    assert read([BODY]) == EVENTS
    assert read([BODY[i : i + 1] for i in range(len(BODY))]) == EVENTS


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings_even_split_between_pieces(ending: bytes) -> None:
    body = BODY.replace(b"\n", ending)
    assert read([body]) == EVENTS
    assert read([body[i : i + 1] for i in range(len(body))]) == EVENTS


def test_an_unterminated_event_is_not_returned() -> None:
    assert read([b'data: {"a": 1}\n']) == []


def test_an_event_without_end_beyond_the_bound_is_refused() -> None:
    reader = SSEDataReader()
    reader.feed(b"data: " + b"x" * (MAX_EVENT_BYTES - 10))
    with pytest.raises(EventTooLarge):
        reader.feed(b"x" * 20)


def chunk(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_chunk_s_text_finish_reason_and_usage() -> None:
    assert _read_chunk(chunk(choices=[{"index": 0, "delta": {"content": "hi"}}])) == (
        "hi",
        None,
        None,
    )
    assert _read_chunk(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])) == (
        "",
        "stop",
        None,
    )
    assert _read_chunk(chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 5})) == (
        "",
        None,
        Usage(prompt_tokens=3, completion_tokens=5),
    )
    # Only choice 0 is ours.
    assert _read_chunk(chunk(choices=[{"index": 1, "delta": {"content": "x"}}]))[0] == ""


def test_an_error_object_in_the_stream_is_a_server_error() -> None:
    with pytest.raises(LLMError) as caught:
        _read_chunk(chunk(error={"message": "The server is overloaded.", "type": "server_error"}))
    assert caught.value.code == "llm_server_error"
    assert "The server is overloaded." in caught.value.message


@pytest.mark.parametrize(
    "data",
    [
        b"[1, 2]",
        chunk(choices=[{"index": 0, "delta": {"content": 5}}]),
        chunk(choices=[{"index": 0, "delta": "text"}]),
        chunk(choices="no"),
        chunk(usage={"prompt_tokens": "many"}),
    ],
)
def test_json_of_the_wrong_shape_is_a_bad_response(data: bytes) -> None:
    with pytest.raises(LLMError) as caught:
        _read_chunk(data)
    assert caught.value.code == "llm_bad_response"
