"""An injected clock, so tests advance time instead of sleeping.

Wall times come off the monotonic clock through one offset: a call's wall stamps are then one
reading, not two. Read as a `monotonic()` then a `time()`, a GIL switch between the two put a usage
record's whole [start, end] late by the switch, so it overlapped the next call on its slot (a cap of
three showed four records at once)."""
from __future__ import annotations

import threading
import time

STEP_S = 0.5   # the wall clock moved this far against the monotonic one: it was set, take it again


def _anchor() -> float:
    """wall - monotonic, from the tightest of a few bracketed readings."""
    best = None
    for _ in range(5):
        m1 = time.monotonic()
        w = time.time()
        m2 = time.monotonic()
        if best is None or m2 - m1 < best[0]:
            best = (m2 - m1, w - (m1 + m2) / 2)
    return best[1]


_offset = _anchor()   # process-wide: every SystemClock's wall times agree


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        global _offset
        mono, wall = time.monotonic(), time.time()
        if abs(wall - (mono + _offset)) > STEP_S:
            _offset = _anchor()
        return mono + _offset

    def wall_of(self, mono: float) -> float:
        """The wall time of a monotonic reading: one reading gives both stamps."""
        return mono + _offset

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock:
    """For unit tests: time moves only when `advance` is called."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_800_000_000.0):
        self._mono, self._wall = start, wall
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def wall_of(self, mono: float) -> float:
        return mono + (self._wall - self._mono)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds
            self._wall += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
