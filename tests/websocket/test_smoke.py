import pytest

from tests.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_offline_answer_streams_to_the_room() -> None:
    alice = await connect("smoke")
    frames = await alice.answer("What is on the menu?")
    types = [f["type"] for f in frames]
    assert types[0] == "question"
    assert types[1] == "answer.start"
    assert types[-1] == "answer.end"
    end = frames[-1]
    deltas = "".join(f["text"] for f in frames if f["type"] == "answer.delta")
    assert end["status"] == "complete"
    assert deltas == end["text"]
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    await alice.close()
