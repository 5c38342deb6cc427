"""The simulator's settings: server defaults, and per-request `[[sim ...]]` directives."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Faults answered with an HTTP error status before any streaming starts.
STATUS_FAULTS: dict[str, int] = {"400": 400, "401": 401, "429": 429, "500": 500, "503": 503}
# Faults that happen mid-stream, after `fault_after` content tokens.
STREAM_FAULTS = frozenset({"drop", "truncate", "stall", "malformed"})
FAULTS = frozenset(STATUS_FAULTS) | STREAM_FAULTS

_DIRECTIVE = re.compile(r"\[\[sim\b([^\]]*)\]\]")


class ConfigError(ValueError):
    """A setting or directive the simulator does not understand; answered with HTTP 400."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulator answers. Server defaults; each request may override with directives."""

    tokens: int = 60
    # Tokens per second; 0 or less sends as fast as possible.
    tps: float = 50.0
    # Seconds between receiving the request and sending the first content token.
    first_token_delay: float = 0.2
    fault: str | None = None
    # Content tokens sent before a mid-stream fault; None means half of the answer.
    fault_after: int | None = None
    # Fault only the first N matching requests, then answer normally; 0 faults every request.
    fail_times: int = 0
    # Seconds sent in the Retry-After header with 429 and 503; None sends no header.
    retry_after: float | None = 1.0
    # Start the answer with the first words of the question.
    echo: bool = False
    model: str = "simulator"

    def updated(self, overrides: Mapping[str, Any]) -> SimConfig:
        """A copy with `overrides` (directive strings or JSON values) validated and applied."""
        changes = {name: _coerce(name, value) for name, value in overrides.items()}
        return dataclasses.replace(self, **changes)

    def mid_stream_fault_at(self) -> int:
        if self.fault_after is not None:
            return max(0, min(self.fault_after, self.tokens))
        return self.tokens // 2

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {field.name: field for field in dataclasses.fields(SimConfig)}


def _coerce(name: str, value: Any) -> Any:
    if name not in _FIELDS:
        raise ConfigError(f"Unknown simulator setting {name!r}.")
    if isinstance(value, str) and value.lower() in {"none", "null", ""}:
        value = None
    try:
        if name in {"tokens", "fail_times"}:
            return max(0, int(value))
        if name == "fault_after":
            return None if value is None else max(0, int(value))
        if name in {"tps", "first_token_delay"}:
            return max(0.0, float(value))
        if name == "retry_after":
            return None if value is None else max(0.0, float(value))
        if name == "echo":
            return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
        if name == "fault":
            if value is None or value == "none":
                return None
            if str(value) not in FAULTS:
                raise ConfigError(
                    f"Unknown simulator fault {value!r}; use one of {sorted(FAULTS)}."
                )
            return str(value)
        return str(value)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"Bad value {value!r} for simulator setting {name!r}.") from err


def parse_directives(text: str) -> dict[str, str]:
    """The `key=value` pairs of every `[[sim ...]]` directive in `text` (later ones win)."""
    found: dict[str, str] = {}
    for match in _DIRECTIVE.finditer(text):
        for pair in match.group(1).split():
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f"Simulator directive {pair!r} is not key=value.")
            found[key.strip()] = value.strip()
    return found
