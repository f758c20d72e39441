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

from chalicelib.assign import placement
from chalicelib.execute.backends.base import Backend
from chalicelib.clock import SystemClock
from chalicelib.execute.container import Container, State
from chalicelib.execute.outcomes import lambda_error
from chalicelib.execute.handoff import HandOffLine
from chalicelib.model import ExecInfo, FunctionConfig, Invocation, Outcome

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
                 on_log: Callable[[str, str, str], None] = lambda fn, stream, line: None,
                 restore_latest: bool = False):
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
        self.restore_latest = restore_latest   # MK1_SNAPSTART_LATEST: $LATEST restores too
        self._lock = threading.Lock()
        self._containers: dict[str, Container] = {}
        self._seq = 0
        self._last_picked_seq: int | None = None
        self._backoff: dict[tuple, _Backoff] = {}    # fingerprint -> init-error backoff
        # version -> (generation, fingerprint) its calls now run with: containers of another are
        # drained. Only a config of a later control-plane read replaces it: a call accepted before an
        # update and run after it must not bring the old configuration back.
        self._current: dict[str, tuple[int, tuple]] = {}
        self.cold_starts = 0
        self._line = HandOffLine()

    # -- the call path --
    def run(self, inv: Invocation, config: FunctionConfig,
            release: Callable[[], None] | None = None) -> tuple[Outcome, ExecInfo]:
        """`release` (the call's slot): answered() may call it as soon as the function answers."""
        self._note_current(config)
        inv.release = release
        container: Container | None = None
        if inv.handed:
            inv.handed = False
            # Woken once it went out, on whichever expecting container asked first; untaken if the
            # container reserved for it died first: placed here as usual.
            container = inv.taken_by  # type: ignore[assignment]
        handed = container is not None
        cold, refusal = False, None
        if not handed:
            container, cold, refusal = self._acquire(config)
        started = self.clock.monotonic()
        started_wall = self.clock.wall_of(started)
        if refusal is not None:
            info = ExecInfo("", self.backend.name, True, None, 0.0, None, started_wall, started_wall)
            return refusal, info
        assert container is not None
        outcome = container.run(inv, config.timeout_s, cold=cold, handed=handed)
        ended = self.clock.monotonic()
        init_ms = container.init_ms if cold else None
        span = container.span(inv)
        if span is not None:
            # Until its answer came in, not until this thread happened to wake (its slot and
            # container may be running the next call by then); warm, also from the moment it
            # went out to the runtime (a handed call's thread wakes after it went out). A cold
            # call's span starts here: its init is part of it.
            if cold:
                ended = span[2]
            else:
                started, started_wall, ended = span
        exec_ms = (ended - started) * 1000 - (init_ms or 0.0)
        info = ExecInfo(container.id, self.backend.name, cold, init_ms, max(exec_ms, 0.0), None,
                        started_wall, self.clock.wall_of(ended),
                        read_memory=container.handle.max_memory_mb if container.handle else None,
                        restored=cold and container.restored)
        # answered() runs before the answer reaches this thread: it has decided by now.
        with self._lock:
            inv.release, freed = None, inv.freed
        self._after(container, config, outcome, freed)
        return outcome, info

    def _acquire(self, config: FunctionConfig) -> tuple[Container | None, bool, Outcome | None]:
        with self._lock:
            now = self.clock.monotonic()
            while True:
                idle = [c for c in self._containers.values()
                        if c.state is State.READY and c.fingerprint == config.fingerprint]
                choice = placement.pick(self.policy, [self._candidate(c) for c in idle], self._last_picked_seq)
                if choice is None:
                    break
                container = self._containers[choice.id]
                if container.try_reserve():
                    self._last_picked_seq = container.seq
                    return container, False, None
            backoff = self._backoff.get(config.fingerprint)
            if backoff is not None and now < backoff.until:
                # A broken function does not restart in a hot loop: answer with its last init error.
                return None, True, backoff.outcome
            self._seq += 1
            container = Container(seq=self._seq, function=config, code_dir=self.code_dir_for(config),
                                  work_root=self.work_root, backend=self.backend, clock=self.clock,
                                  on_log=lambda stream, line: self.on_log(self.name, stream, line),
                                  on_gone=self._forget, on_answer=self.answered,
                                  start_timeout_s=self.start_timeout_s, line=self._line,
                                  snapshot_key=self.snapshot_key(config))
            self._containers[container.id] = container
            self.cold_starts += 1
            return container, True, None

    def snapshot_key(self, config: FunctionConfig) -> tuple | None:
        """SnapStart: a published version with ApplyOn=PublishedVersions restores from its snapshot
        (and so does $LATEST, if MK1_SNAPSTART_LATEST asks); the key is what the snapshot is made of."""
        if config.snap_start or (self.restore_latest and config.version == "$LATEST"):
            return (config.name, *config.fingerprint)
        return None

    def prepare_snapshot(self, config: FunctionConfig) -> None:
        """SnapStart, at publish: make the version's snapshot (its init) in the background, once."""
        key = self.snapshot_key(config)
        snapshots = getattr(self.backend, "snapshots", None)
        if key is None or snapshots is None or snapshots.has(key) or not self.backend.restores(key, config.runtime):
            return
        stream = f"{config.version}/snapshot"
        spec = Container.snapshot_spec(config, self.code_dir_for, self.work_root, key, self.start_timeout_s,
                                       lambda line: self.on_log(self.name, stream, line))

        def make() -> None:
            try:
                snap = self.backend.snapshot(spec)   # type: ignore[attr-defined]
                snap.wait_ready()
                self.on_log(self.name, stream, f"INIT_REPORT Init Duration: {snap.init_ms:.2f} ms\t")
            except Exception as e:
                log.warning("%s: the snapshot of version %s failed: %s", self.name, config.version, e)
        threading.Thread(target=make, daemon=True, name=f"snapshot-{self.name}").start()

    # -- the direct hand-off at the cap (the admission calls prepare(); the container answered()) --
    def prepare(self, inv: Invocation, config: FunctionConfig, wake: Callable[[], None] | None = None) -> bool:
        """In the thread granting `inv` its slot (under the admission's lock): reserve an idle warm
        container and hand it `inv` now, so the container's pending /next returns without waiting
        for the caller's thread to wake. True if handed (then `wake` is called once it went out).
        False (no idle warm container): the caller's own run() does the usual placement."""
        with self._lock:
            idle = [c for c in self._containers.values()
                    if c.state is State.READY and c.fingerprint == config.fingerprint]
            choice = placement.pick(self.policy, [self._candidate(c) for c in idle], self._last_picked_seq)
            if choice is None:
                return False
            container = self._containers[choice.id]
            if not container.try_reserve():
                return False
            self._last_picked_seq = container.seq
            inv.handed = True
        if container.hand(inv, wake):
            return True
        with self._lock:
            inv.handed = False
        container.release(self.clock.monotonic())
        return False

    def answered(self, container: Container, inv: Invocation) -> None:
        """The Runtime API thread, as the function answers: free the container and the call's slot
        at once (the admission may hand both to the next call right here), instead of after the
        caller's thread has woken. Only for a container that stays in use."""
        with self._lock:
            release, inv.release = inv.release, None
            if release is None or self.keepalive_s <= 0 or self._stale(container):
                return
            if not container.release(self.clock.monotonic()):
                return
            inv.freed = True
        release()

    def _after(self, container: Container, config: FunctionConfig, outcome: Outcome,
               freed: bool = False) -> None:
        now = self.clock.monotonic()
        with self._lock:
            if outcome.status == "init_error":
                prev = self._backoff.get(config.fingerprint)
                delay = min(prev.delay * 2, MAX_INIT_BACKOFF_S) if prev else self.init_backoff_s
                self._backoff[config.fingerprint] = _Backoff(now + delay, delay, outcome)
            elif outcome.status in ("success", "function_error"):
                self._backoff.pop(config.fingerprint, None)
        if freed:
            return   # answered() already made it READY (and it may be running the next call)
        # On the caller's thread, before its answer is sent: a stop does not wait for the kill.
        draining = self._stale(container)
        if self.keepalive_s <= 0 or draining:
            container.stop(wait=False)
        elif not container.release(now):
            container.stop(wait=False)  # timed out / crashed: make sure it is gone

    def _note_current(self, config: FunctionConfig) -> None:
        known = self._current.get(config.version)
        if known is None or config.generation >= known[0]:
            self._current[config.version] = (config.generation, config.fingerprint)

    def _stale(self, container: Container) -> bool:
        """Its version's calls now run with another configuration or code (an update): drain it."""
        current = self._current.get(container.function.version)
        return current is not None and current[1] != container.fingerprint

    def _forget(self, container: Container) -> None:
        with self._lock:
            self._containers.pop(container.id, None)

    @staticmethod
    def _candidate(c: Container) -> placement.Candidate:
        return placement.Candidate(c.id, c.seq, c.last_used)

    # -- housekeeping --
    def reap(self) -> list[str]:
        """Stop idle containers past the keepalive, and idle ones of a replaced configuration or code."""
        now = self.clock.monotonic()
        with self._lock:
            idle = [c for c in self._containers.values() if c.state is State.READY]
            expired = {c.id for c in placement.idle_to_stop([self._candidate(c) for c in idle], now,
                                                            self.keepalive_s)}
            stale = {c.id for c in idle if self._stale(c)}
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
