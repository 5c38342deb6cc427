"""The simulator's deterministic answer text, so tests can check what the client joined."""

from __future__ import annotations

import re
from itertools import cycle, islice

# A fixed bilingual passage: readable in a demo, and Korean tokens exercise UTF-8 handling.
_PASSAGE = (
    "Streaming answers arrive one token at a time so that everyone in the room reads along. "
    "스트리밍 답변은 한 토큰씩 도착하므로 방에 있는 모든 사람이 함께 읽습니다. "
    "This text comes from the simulator, not from a real language model. "
    "이 문장은 실제 언어 모델이 아니라 시뮬레이터가 만든 것입니다. "
    "Every word is one token followed by a space, and the words repeat in a fixed order. "
    "모든 단어는 공백이 붙은 하나의 토큰이며 같은 순서로 반복됩니다."
)
WORDS: tuple[str, ...] = tuple(_PASSAGE.split())

# How many words of the question an echoing answer repeats first.
ECHO_WORDS = 8

_DIRECTIVE = re.compile(r"\[\[sim\b[^\]]*\]\]")


def strip_directives(text: str) -> str:
    """The question without its `[[sim ...]]` directives (only used for echoing)."""
    return " ".join(_DIRECTIVE.sub(" ", text).split())


def simulated_tokens(count: int, *, question: str = "", echo: bool = False) -> list[str]:
    """The `count` tokens the simulator streams: each is one word plus a following space.

    With `echo`, the answer starts with up to the first eight words of the question.
    """
    if count <= 0:
        return []
    echoed = strip_directives(question).split()[:ECHO_WORDS] if echo else []
    words = [*echoed[:count], *islice(cycle(WORDS), max(0, count - len(echoed)))]
    return [f"{word} " for word in words]


def simulated_text(count: int, *, question: str = "", echo: bool = False) -> str:
    """The whole answer of `count` tokens, as the client should join it."""
    return "".join(simulated_tokens(count, question=question, echo=echo))


def rough_token_count(text: str) -> int:
    """A cheap, stable stand-in for a tokenizer, used for the reported prompt usage."""
    return len(re.findall(r"\w+|[^\w\s]", text))
