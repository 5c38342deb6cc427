"""chat.protocol.dumps: the JSON of every frame, written by orjson, is what the protocol has
always sent (compact, Korean as is), and what orjson refuses is still written by `json`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import protocol


def _json_module(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


MEMBERS = [{"id": f"g_{index:012x}", "name": f"손님 {index}"} for index in range(3)]


@pytest.mark.parametrize(
    "frame",
    [
        protocol.answer_delta_event(answer_id="a_1", text=" 아메리카노는 4,500원이에요."),
        {"seq": 12, **protocol.answer_delta_event(answer_id="a_1", text='"quoted" \\ \n\t end')},
        protocol.presence_frame(MEMBERS),
        protocol.welcome_frame(
            room="cafe",
            user=MEMBERS[0],
            seq=4567,
            resumed=True,
            history=[],
            members=MEMBERS,
            access=protocol.access_info(role="member", moderate=False, configure=False),
        ),
        protocol.error_frame("rate_limited", "Slow down.", retry_after=1.5),
        {"type": "x", "control": "\x00\x1f\x7f", "line separator": "\u2028", "emoji": "🙂"},
    ],
)
def test_a_frame_is_written_exactly_as_json_wrote_it(frame: dict[str, Any]) -> None:
    assert protocol.dumps(frame) == _json_module(frame)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "answer.delta", "text": "half of a pair: \ud800"},  # JSON can carry one in
        {"type": "x", "seq": 2**70},
    ],
)
def test_what_orjson_refuses_is_written_by_json_as_before(frame: dict[str, Any]) -> None:
    assert protocol.dumps(frame) == _json_module(frame)
