"""Giving memory back to the system after a crowd leaves.

Measured (docs/benchmarks.md, "Memory after a crowd leaves"): when 5,000 connections close, a
worker keeps none of their objects, yet its RSS stays at its peak. Two things hold it:

- Each connection leaves about 94 objects in reference cycles (daphne's, Twisted's and
  asyncio's), which only the cyclic collector's oldest generation frees, and CPython runs that
  one rarely. Until it does, the memory is in use.
- Freed memory is kept by the allocator. CPython's own small-object allocator (pymalloc) returns
  a 1 MiB arena only when every block in it is free, and the few objects that outlive a crowd pin
  nearly all of them (203 arenas kept for 60 MB of live blocks). Under `PYTHONMALLOC=malloc`
  (set by the project's run commands) small objects come from glibc's malloc, whose
  `malloc_trim` gives back every free page.

So once a crowd has gone, the worker collects its cycles and trims the heap: measured from
361 MiB (nothing done) to 184 MiB against 169 MiB warm. The collection's pause is the one
CPython's own oldest-generation collection would make later anyway, for the same garbage; this
chooses the moment: after many closes, once the leaving has settled and fewer people are
connected than have left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What one reclaim did: objects collected, the RSS before and after, its pause."""

    collected: int
    rss_before: int | None
    rss_after: int | None
    collect_seconds: float
    trim_seconds: float
    trimmed: bool


class Reclaimer:
    """Decides when a reclaim is worth its pause, from a worker's count of closed connections
    (ever) and of connections open now."""

    def __init__(self, after_closes: int) -> None:
        # 0 turns reclaiming off.
        self._after_closes = after_closes
        self._closed_at_last = 0
        self._closed_at_check = 0

    def due(self, closed_total: int, connected: int) -> bool:
        """Asked once per sweep: True after `after_closes` closes since the last reclaim, once
        fewer people are connected than have left since then (what is alive is small to
        collect) and the leaving has settled (fewer than a tenth of `after_closes` closed since
        the previous sweep: a crowd half gone would leave its other half to the next time)."""
        recent = closed_total - self._closed_at_check
        self._closed_at_check = closed_total
        closed = closed_total - self._closed_at_last
        return (
            0 < self._after_closes <= closed
            and connected < closed
            and recent * 10 < self._after_closes
        )

    def reclaim(self, closed_total: int) -> Reclaimed:
        self._closed_at_last = closed_total
        before = rss_bytes()
        started = time.perf_counter()
        collected = gc.collect()
        collected_at = time.perf_counter()
        trimmed = malloc_trim()
        result = Reclaimed(
            collected=collected,
            rss_before=before,
            rss_after=rss_bytes(),
            collect_seconds=collected_at - started,
            trim_seconds=time.perf_counter() - collected_at,
            trimmed=trimmed,
        )
        logger.info(
            "Memory reclaimed after a crowd left: %d objects collected in %.0f ms, heap trimmed "
            "in %.0f ms%s; RSS %s -> %s MiB",
            result.collected,
            result.collect_seconds * 1000,
            result.trim_seconds * 1000,
            "" if trimmed else " (no glibc malloc_trim here)",
            _mib(result.rss_before),
            _mib(result.rss_after),
        )
        return result


def _load_malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def malloc_trim() -> bool:
    """Give glibc's free pages back to the system (all arenas, the middle of the heap too);
    False where there is no glibc."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def rss_bytes() -> int | None:
    """This process's resident set (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:.0f}"
