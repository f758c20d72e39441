"""Small helpers shared by the reliability tests."""
from __future__ import annotations

import threading
import time
from collections import Counter


def in_use(system, function: str) -> int:
    return system.status()["functions"][function]["in_use"]


def records_by_id(records: list[dict]) -> Counter:
    return Counter(r["request_id"] for r in records)


def peak_overlap(records: list[dict]) -> int:
    """Most executions running at once, from the records' [start, end] intervals (ISO strings sort)."""
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records],
                    key=lambda e: (e[0], e[1]))   # an end before a start at the same instant
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    return peak


class Background:
    """Run `fn(*args)` in threads; `.results` collects return values or exceptions."""

    def __init__(self):
        self.threads: list[threading.Thread] = []
        self.results: list = []
        self._lock = threading.Lock()

    def start(self, fn, *args) -> None:
        def run():
            try:
                r = fn(*args)
            except Exception as e:  # noqa: BLE001 - collected for the assertions
                r = e
            with self._lock:
                self.results.append(r)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self, timeout: float = 60) -> list:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "calls still running after the bound"
        return self.results
