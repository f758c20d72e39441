"""An injected clock, so tests advance time instead of sleeping."""
from __future__ import annotations

import threading
import time


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

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

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds
            self._wall += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
