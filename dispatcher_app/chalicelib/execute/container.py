"""One execution environment (container): starting and stopping it, and a caller's side of an
invocation (hand it to the runtime, wait for the outcome, fail it on a timeout).

The lifecycle is the checked state machine of states.py; the runtime's side of an invocation
(what the Runtime API endpoint calls: next event, response, error) is runtime_host.py.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Callable

from chalicelib.clock import SystemClock
from chalicelib.execute import outcomes
from chalicelib.execute.backends.base import Backend, ContainerSpec, Handle
from chalicelib.execute.environment import lambda_environment, short_uid, socket_dir
from chalicelib.execute.handoff import HandOffLine
from chalicelib.execute.runtime_api import RuntimeEndpoint, Send
from chalicelib.execute.runtimes import StartFailure
from chalicelib.execute.snapshots import RESTORE_TIMEOUT_S, SnapshotFailed
from chalicelib.execute.runtime_host import RuntimeSide
from chalicelib.execute.states import ALLOWED, IllegalTransition, State
from chalicelib.model import FunctionConfig, Invocation, Outcome, log_stream_name

log = logging.getLogger("mk1.containers")

# The function's timeout is measured by the runtime's clock; this covers the hand-off.
HANDOFF_SLACK_S = 0.05


class Container(RuntimeSide):
    """One execution environment: its process (backend), its Runtime API endpoint, its state."""

    def __init__(self, *, seq: int, function: FunctionConfig, code_dir: Path, work_root: Path,
                 backend: Backend, clock=None, on_log: Callable[[str, str], None] = lambda cid, line: None,
                 on_gone: Callable[["Container"], None] = lambda c: None,
                 on_answer: Callable[["Container", Invocation], None] = lambda c, inv: None,
                 start_timeout_s: float = 60.0, extra_env: dict | None = None, line: HandOffLine | None = None,
                 snapshot_key: tuple | None = None):
        self.seq = seq
        self.id = f"{function.name}-{seq:04d}-{short_uid()}"
        self.function = function
        self.code_sha = function.code_sha
        self.fingerprint = function.fingerprint   # what it was made from (model.FunctionConfig)
        self.backend = backend
        self.clock = clock or SystemClock()
        self._on_log, self._on_gone, self._on_answer = on_log, on_gone, on_answer
        self.start_timeout_s = start_timeout_s
        self.state = State.STARTING
        self._cond = threading.Condition()
        self._pending: Invocation | None = None
        self._current: Invocation | None = None
        # The runtime's /next while there is no work, as the means to answer it (send(None): the
        # container is stopping, 410). Its Runtime API thread does not wait for work:
        # it goes back to reading the connection (the runtime's answer comes there), and a warm
        # call's own thread sends the event on the parked request (run()). No thread is woken to
        # start a call, none to go back to reading: on a VM a wake-up across vCPUs costs 30-300 us,
        # mostly paid by the waker (bench/wakeup.py).
        self._parked: Send | None = None
        self._line = line if line is not None else HandOffLine()   # shared by the pool's containers (handoff.py)
        self._init_error: tuple[bytes, str] | None = None
        self._ready = threading.Event()
        # Direct hand-off (see hand()): answers held back until the next invocation has gone out,
        # and the wake-ups of callers whose invocation was handed here by their granting thread.
        self._deferred: list[tuple[Invocation, Outcome]] = []
        self._wakes: list[Callable[[], None]] = []
        self.created_at = self.clock.monotonic()
        self.last_used = self.created_at
        self.init_ms: float | None = None     # restored: the Restore Duration
        self.snapshot_key = snapshot_key      # SnapStart: restore from this version's snapshot
        self.restored = False
        self._init_from = self.created_at
        self._restore_error: tuple[bytes, str] | None = None
        self.invocations = 0
        self.exit_code: int | None = None
        self.handle: Handle | None = None
        self._killed = False   # the kill was made (_fail() and a later stop() both ask for it)
        self._work_dir = work_root / self.id
        restores = getattr(backend, "restores", None)
        self._restoring = restores is not None and restores(snapshot_key, function.runtime)
        # A SnapStart restore brings the listener its environment already knows (made in start()).
        socket_path = socket_dir() / f"{short_uid()}.sock" if backend.needs_socket else None
        self.endpoint: RuntimeEndpoint | None = None if self._restoring else RuntimeEndpoint(self, socket_path)
        self._env = extra_env or {}
        self._code_dir = code_dir

    # -- state machine --
    def _to(self, new: State) -> None:
        """Caller holds self._cond."""
        if new not in ALLOWED[self.state]:
            raise IllegalTransition(f"{self.id}: {self.state.value} -> {new.value}")
        self.state = new

    def try_reserve(self) -> bool:
        with self._cond:
            if self.state is not State.READY:
                return False
            self._to(State.BUSY)
            return True

    def release(self, now: float) -> bool:
        """BUSY -> READY after an invocation; False if the container is no longer usable."""
        with self._cond:
            if self.state is not State.BUSY:
                return False
            self._to(State.READY)
            self.last_used = now
            return True

    def try_begin_stop(self, only_if_idle: bool = True) -> bool:
        with self._cond:
            if only_if_idle and self.state is not State.READY:
                return False
            if State.STOPPING not in ALLOWED[self.state]:
                return False
            self._to(State.STOPPING)
            self._cond.notify_all()
            return True

    # -- start / stop --
    def start(self) -> None:
        """Start the container process (the caller has put it in the pool as STARTING)."""
        f = self.function
        env = lambda_environment(f, self.log_stream, self._code_dir, self._env)
        spec = ContainerSpec(container_id=self.id, function_name=f.name, code_dir=self._code_dir,
                             work_dir=self._work_dir, handler=f.handler, env=env, memory_mb=f.memory_mb,
                             runtime_api="", on_output=self._output, runtime=f.runtime,
                             snapshot_key=self.snapshot_key, init_timeout_s=self.start_timeout_s)
        if self.endpoint is not None:
            self.endpoint.start()
            spec = dataclasses.replace(spec, runtime_api=self.endpoint.address,
                                       runtime_socket=self.endpoint.socket_path)
        try:
            if self._restoring:
                # A snapshot made for this call (not at publish) runs its init first: not this restore's.
                self.backend.snapshot(spec).wait_ready()   # type: ignore[attr-defined]
                self._init_from = self.clock.monotonic()
            self.handle = self.backend.start(spec)
            self.restored = bool(getattr(self.handle, "restored", False))
            listener = getattr(self.handle, "runtime_listener", None)
            if listener is not None:   # restored: its Runtime API on the address it was forked with
                self.endpoint = RuntimeEndpoint(self, listener=listener).start()
        except SnapshotFailed as e:   # the version's init failed: the function's own error
            log.warning("%s: %s", self.id, e)
            self._init_error = (e.body or outcomes.lambda_error(str(e), e.error_type), e.error_type)
            self._gone(exit_code=None)
            return
        except StartFailure as e:   # the runtime cannot run here: its own words and errorType
            log.warning("%s: %s", self.id, e)
            self._init_error = (outcomes.lambda_error(str(e), e.error_type), e.error_type)
            self._gone(exit_code=None)
            return
        except Exception as e:
            log.exception("%s: backend could not start the container", self.id)
            self._init_error = (outcomes.lambda_error(f"container could not start: {e}", "Runtime.StartError"),
                                "Runtime.StartError")
            self._gone(exit_code=None)
            return
        threading.Thread(target=self._monitor, daemon=True, name=f"mon-{self.id}").start()

    @staticmethod
    def snapshot_spec(f: FunctionConfig, code_dir_for: Callable[[FunctionConfig], Path], work_root: Path,
                      key: tuple, init_timeout_s: float, on_output: Callable[[str], None]) -> ContainerSpec:
        """What a version's SnapStart snapshot is made from (its environments' spec, less their own)."""
        code_dir = code_dir_for(f)
        sid = f"{f.name}-snapshot-{short_uid()}"
        return ContainerSpec(container_id=sid, function_name=f.name, code_dir=code_dir, work_dir=work_root / sid,
                             handler=f.handler, env=lambda_environment(f, "", code_dir, {}), memory_mb=f.memory_mb,
                             runtime_api="127.0.0.1:9", on_output=on_output, runtime=f.runtime,
                             snapshot_key=key, init_timeout_s=init_timeout_s)

    @property
    def log_stream(self) -> str:
        return log_stream_name(self.function.version, self.id)

    def stop(self, wait: bool = True) -> None:
        """Stop now (reaper, shutdown, drain). Safe from any state. wait=False (a caller's thread,
        its answer not sent yet): STOPPING at once, so no call can take it, and the kill on a thread
        of its own — a Docker container's forced remove is an engine call (55-63 ms measured on a
        running one)."""
        with self._cond:
            if self.state is State.STOPPED:
                return
            if self.state is not State.STOPPING and State.STOPPING in ALLOWED[self.state]:
                self._to(State.STOPPING)
            parked, self._parked = self._parked, None
            self._cond.notify_all()
        if self.handle is None:
            if parked is not None:
                self._send_parked(parked, None)   # its /next is answered 410: the runtime exits
            self._gone(exit_code=None)
        elif wait:
            self._last_reading_then_kill(parked)
        else:
            self._kill_aside(parked)

    def _kill_aside(self, parked: Send | None = None) -> None:
        """Kill on a thread of its own: the caller's answer does not wait for the engine."""
        threading.Thread(target=self._last_reading_then_kill, args=(parked,), daemon=True,
                         name=f"stop-{self.id}").start()

    def _last_reading_then_kill(self, parked: Send | None = None) -> None:
        # The last call's peak memory is read after its answer (ExecInfo.memory_mb): read it now,
        # while the process (or cgroup) still exists, so that reading finds it in the handle. Before
        # the runtime's parked /next is answered 410 too: on that answer the runtime exits at once,
        # and an exited process has no reading left (keepalive 0 once saw a record without its peak).
        handle = self.handle
        assert handle is not None
        with self._cond:
            if self._killed:
                if parked is not None:
                    self._send_parked(parked, None)
                return
            self._killed = True
        try:
            handle.max_memory_mb()
        except Exception:
            log.debug("%s: no last memory reading before the kill", self.id, exc_info=True)
        if parked is not None:
            self._send_parked(parked, None)   # its /next is answered 410: the runtime exits
        handle.kill()

    def _monitor(self) -> None:
        code = self.handle.wait()  # type: ignore[union-attr]
        self._gone(exit_code=code)

    def _gone(self, exit_code: int | None) -> None:
        with self._cond:
            if self.state is State.STOPPED:
                return
            expected = self.state is State.STOPPING
            if not expected and self.state is not State.FAILED:
                self._to(State.FAILED)
            self.exit_code = exit_code
            deferred, self._deferred = self._deferred, []
            wakes, self._wakes = self._wakes, []
            for answered, outcome in deferred:
                answered.finish(outcome)
            inv = self._current or self._pending
            self._current = self._pending = self._parked = None
            if inv is not None:
                inv.finish(self._exit_outcome(exit_code, inv.request_id))
            orphan = self._line.leave(self.id)
            if orphan is not None and orphan[1] is not None:
                wakes.append(orphan[1])   # untaken: its caller places it on another container
            self._to(State.STOPPED)
            self._cond.notify_all()
        for wake in wakes:
            wake()
        self._ready.set()
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.handle is not None:
            self.handle.remove()
        if not expected:
            log.warning("%s exited unexpectedly (code %s)", self.id, exit_code)
        self._on_gone(self)

    def _exit_outcome(self, code: int | None, request_id: str) -> Outcome:
        if self._restore_error is not None:
            body, etype = self._restore_error
            return Outcome("restore_error", body, etype)
        if self._init_error is not None:
            body, etype = self._init_error
            return Outcome("init_error", body, etype)
        return outcomes.exited(code, request_id)

    # -- one invocation --
    def run(self, inv: Invocation, timeout_s: float, cold: bool = False, handed: bool = False) -> Outcome:
        """Hand `inv` to the runtime and wait for its outcome.

        Warm: the container is BUSY (reserved by the pool). Cold: it is STARTING and
        `inv` is queued before the process starts, so the first /next takes it and the
        container goes straight to BUSY (never READY, where another caller could grab it).
        Handed (hand()): `inv` is already this container's (or finished, if the container died).
        """
        if not handed:
            with self._cond:
                if self.state in (State.STOPPED, State.FAILED, State.STOPPING):
                    return self._exit_outcome(self.exit_code, inv.request_id)
                parked, self._parked = self._parked, None
                if parked is not None:
                    out = self._go_out(inv)
                else:
                    self._pending = inv          # its runtime takes it when it asks
                    self._cond.notify_all()
            if parked is not None:
                self._send_parked(parked, out)
        if cold:
            self.start()
        # A restore has AWS's 10 s for the runtime and its after-restore hooks; an init, mk1's limit.
        ready_s = RESTORE_TIMEOUT_S if self.restored else self.start_timeout_s
        if not self._ready.wait(ready_s):
            self._fail(inv, outcomes.restore_timed_out(ready_s) if self.restored else outcomes.init_timed_out(ready_s))
        elif not inv.done.wait(timeout_s + HANDOFF_SLACK_S):
            self._fail(inv, outcomes.timed_out(inv.request_id, timeout_s))
        assert inv.outcome is not None
        self.invocations += 1
        return inv.outcome

    def _fail(self, inv: Invocation, outcome: Outcome) -> None:
        with self._cond:
            # Neither waiting to go out nor out, yet unfinished: its answer is in (being handled or
            # held back until the next invocation went out), in time. Not a timeout.
            answered = self._current is not inv and self._pending is not inv and not inv.done.is_set()
            finished = False if answered else inv.finish(outcome)
            if finished and State.FAILED in ALLOWED[self.state]:
                self._to(State.FAILED)
        if answered:
            self.flush_answers()
            if not inv.done.wait(1.0):
                inv.finish(outcome)
            return
        if finished:
            log.warning("%s: %s; killing the container", self.id, outcome.status)
            if self.handle is not None:
                self._kill_aside()   # FAILED already: nothing can take it meanwhile

    # -- RuntimeHost (called from the Runtime API endpoint's threads) --
    def describe(self, now: float) -> dict:
        return {"id": self.id, "function": self.function.name, "backend": self.backend.name,
                "state": self.state.value, "version": self.function.version, "code_sha256": self.code_sha,
                "init_ms": None if self.init_ms is None else round(self.init_ms, 1), "restored": self.restored,
                "invocations": self.invocations,
                "idle_s": round(now - self.last_used, 3) if self.state is State.READY else 0.0,
                "age_s": round(now - self.created_at, 3),
                "handle": getattr(self.handle, "id", None)}
