"""Assign: which container runs this call? Warm reuse, cold starts, reaping, draining.

The decisions themselves (which idle container, which to stop) are the pure
functions in placement.py; this module applies them under a lock.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import placement
from .backends.base import Backend
from .clock import SystemClock
from .containers import Container, State, lambda_error
from .model import ExecInfo, FunctionConfig, Invocation, Outcome

log = logging.getLogger("mk1.assign")

MAX_INIT_BACKOFF_S = 60.0


@dataclass
class _Backoff:
    until: float
    delay: float
    outcome: Outcome


class FunctionPool:
    """The containers of one function."""

    def __init__(self, name: str, backend: Backend, code_dir_for: Callable[[FunctionConfig], Path],
                 work_root: Path, *, clock=None, policy: str = "round-robin", keepalive_s: float = 300.0,
                 start_timeout_s: float = 60.0, init_backoff_s: float = 2.0,
                 on_log: Callable[[str, str, str], None] = lambda fn, cid, line: None):
        self.name = name
        self.backend = backend
        self.code_dir_for = code_dir_for
        self.work_root = work_root
        self.clock = clock or SystemClock()
        self.policy = policy
        self.keepalive_s = keepalive_s
        self.start_timeout_s = start_timeout_s
        self.init_backoff_s = init_backoff_s
        self.on_log = on_log
        self._lock = threading.Lock()
        self._containers: dict[str, Container] = {}
        self._seq = 0
        self._last_picked_seq: int | None = None
        self._backoff: dict[str, _Backoff] = {}      # code sha -> init-error backoff
        self._current_sha: str | None = None
        self.cold_starts = 0

    # -- the call path --
    def run(self, inv: Invocation, config: FunctionConfig) -> tuple[Outcome, ExecInfo]:
        self._current_sha = config.code_sha
        container, cold, refusal = self._acquire(config)
        started_wall, started = self.clock.time(), self.clock.monotonic()
        if refusal is not None:
            info = ExecInfo("", self.backend.name, True, None, 0.0, None, started_wall, started_wall)
            return refusal, info
        assert container is not None
        outcome = container.run(inv, config.timeout_s, cold=cold)
        ended = self.clock.monotonic()
        init_ms = container.init_ms if cold else None
        exec_ms = (ended - started) * 1000 - (init_ms or 0.0)
        info = ExecInfo(container.id, self.backend.name, cold, init_ms, max(exec_ms, 0.0),
                        container.handle.max_memory_mb() if container.handle else None,
                        started_wall, started_wall + (ended - started))
        self._after(container, config, outcome)
        return outcome, info

    def _acquire(self, config: FunctionConfig) -> tuple[Container | None, bool, Outcome | None]:
        with self._lock:
            now = self.clock.monotonic()
            while True:
                idle = [c for c in self._containers.values()
                        if c.state is State.READY and c.code_sha == config.code_sha]
                choice = placement.pick(self.policy, [self._candidate(c) for c in idle], self._last_picked_seq)
                if choice is None:
                    break
                container = self._containers[choice.id]
                if container.try_reserve():
                    self._last_picked_seq = container.seq
                    return container, False, None
            backoff = self._backoff.get(config.code_sha)
            if backoff is not None and now < backoff.until:
                # A broken function does not restart in a hot loop: answer with its last init error.
                return None, True, backoff.outcome
            self._seq += 1
            container = Container(seq=self._seq, function=config, code_dir=self.code_dir_for(config),
                                  work_root=self.work_root, backend=self.backend, clock=self.clock,
                                  on_log=lambda cid, line: self.on_log(self.name, cid, line),
                                  on_gone=self._forget, start_timeout_s=self.start_timeout_s)
            self._containers[container.id] = container
            self.cold_starts += 1
            return container, True, None

    def _after(self, container: Container, config: FunctionConfig, outcome: Outcome) -> None:
        now = self.clock.monotonic()
        with self._lock:
            if outcome.status == "init_error":
                prev = self._backoff.get(config.code_sha)
                delay = min(prev.delay * 2, MAX_INIT_BACKOFF_S) if prev else self.init_backoff_s
                self._backoff[config.code_sha] = _Backoff(now + delay, delay, outcome)
            elif outcome.status in ("success", "function_error"):
                self._backoff.pop(config.code_sha, None)
        draining = container.code_sha != self._current_sha
        if self.keepalive_s <= 0 or draining:
            container.stop()
        elif not container.release(now):
            container.stop()  # timed out / crashed: make sure it is gone

    def _forget(self, container: Container) -> None:
        with self._lock:
            self._containers.pop(container.id, None)

    @staticmethod
    def _candidate(c: Container) -> placement.Candidate:
        return placement.Candidate(c.id, c.seq, c.last_used)

    # -- housekeeping --
    def reap(self) -> list[str]:
        """Stop idle containers past the keepalive, and idle ones running replaced code."""
        now = self.clock.monotonic()
        with self._lock:
            idle = [c for c in self._containers.values() if c.state is State.READY]
            expired = {c.id for c in placement.idle_to_stop([self._candidate(c) for c in idle], now,
                                                            self.keepalive_s)}
            stale = {c.id for c in idle if self._current_sha and c.code_sha != self._current_sha}
            victims = [c for c in idle if c.id in expired | stale and c.try_begin_stop()]
        for c in victims:
            c.stop()
        return [c.id for c in victims]

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Stop every container and wait (bounded) until each is gone and cleaned up."""
        with self._lock:
            everyone = list(self._containers.values())
        for c in everyone:
            c.stop()
        deadline = self.clock.monotonic() + wait_s
        while self.count() and self.clock.monotonic() < deadline:
            threading.Event().wait(0.02)

    def describe(self) -> list[dict]:
        now = self.clock.monotonic()
        with self._lock:
            return [c.describe(now) for c in sorted(self._containers.values(), key=lambda c: c.seq)]

    def count(self) -> int:
        with self._lock:
            return len(self._containers)


def init_failure(message: str) -> Outcome:
    return Outcome("init_error", lambda_error(message, "Runtime.InitError"), "Runtime.InitError")
