"""One execution environment (container) and its lifecycle state machine.

    STARTING ──first /next──▶ BUSY ◀──reserve── READY
        │                      │  └──release──▶ READY
        ├──init error/timeout──┼──crash/timeout──▶ FAILED ──▶ STOPPED
        └──────────stop────────┴──stop──▶ STOPPING ──exit──▶ STOPPED

Transitions are checked under the container's lock: the idle reaper can only stop
a READY container, so a container reserved (BUSY) a moment earlier is safe.
"""
from __future__ import annotations

import enum
import json
import logging
import threading
from pathlib import Path
from typing import Callable

from chalicelib.execute.backends.base import Backend, ContainerSpec, Handle
from chalicelib.clock import SystemClock
from chalicelib.execute.handoff import HandOffLine
from chalicelib.model import FunctionConfig, Invocation, Outcome
from chalicelib.execute.runtime_api import SENT, NextInvocation, RuntimeEndpoint, Send

log = logging.getLogger("mk1.containers")


# The function's timeout is measured by the runtime's clock; this covers the hand-off.
HANDOFF_SLACK_S = 0.05


class State(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


ALLOWED = {
    State.STARTING: {State.BUSY, State.READY, State.FAILED, State.STOPPING},
    State.READY: {State.BUSY, State.STOPPING},
    State.BUSY: {State.READY, State.STOPPING, State.FAILED},
    State.STOPPING: {State.STOPPED},
    State.FAILED: {State.STOPPED},
    State.STOPPED: set(),
}


class IllegalTransition(RuntimeError):
    pass


def lambda_error(message: str, error_type: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class Container:
    def __init__(self, *, seq: int, function: FunctionConfig, code_dir: Path, work_root: Path,
                 backend: Backend, clock=None, on_log: Callable[[str, str], None] = lambda cid, line: None,
                 on_gone: Callable[["Container"], None] = lambda c: None,
                 on_answer: Callable[["Container", Invocation], None] = lambda c, inv: None,
                 start_timeout_s: float = 60.0, extra_env: dict | None = None, line: HandOffLine | None = None):
        self.seq = seq
        self.id = f"{function.name}-{seq:04d}-{_short_uid()}"
        self.function = function
        self.code_sha = function.code_sha
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
        # request id -> [monotonic, wall] when it went out to the runtime, [.., .., monotonic] when
        # its answer came in: the execution itself, whichever thread wakes when (span()).
        self._spans: dict[str, list[float]] = {}
        self.created_at = self.clock.monotonic()
        self.last_used = self.created_at
        self.init_ms: float | None = None
        self.invocations = 0
        self.exit_code: int | None = None
        self.handle: Handle | None = None
        self._killed = False   # the kill was made (_fail() and a later stop() both ask for it)
        self._work_dir = work_root / self.id
        socket_path = _socket_dir() / f"{_short_uid()}.sock" if backend.needs_socket else None
        self.endpoint = RuntimeEndpoint(self, socket_path)
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
        self.endpoint.start()
        f = self.function
        env = {**f.env, **self._env,
               "AWS_LAMBDA_FUNCTION_NAME": f.name,
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(f.memory_mb),
               "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(f.timeout_s)),
               "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{f.name}",
               "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
               "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
               "AWS_EXECUTION_ENV": f"AWS_Lambda_{f.runtime}",
               "LAMBDA_TASK_ROOT": str(self._code_dir),
               "_HANDLER": f.handler,
               "TZ": ":UTC"}
        spec = ContainerSpec(container_id=self.id, function_name=f.name, code_dir=self._code_dir,
                             work_dir=self._work_dir, handler=f.handler, env=env, memory_mb=f.memory_mb,
                             runtime_api=self.endpoint.address, runtime_socket=self.endpoint.socket_path,
                             on_output=self._output)
        try:
            self.handle = self.backend.start(spec)
        except Exception as e:
            log.exception("%s: backend could not start the container", self.id)
            self._init_error = (lambda_error(f"container could not start: {e}", "Runtime.StartError"),
                                "Runtime.StartError")
            self._gone(exit_code=None)
            return
        threading.Thread(target=self._monitor, daemon=True, name=f"mon-{self.id}").start()

    @property
    def log_stream(self) -> str:
        return f"[$LATEST]{self.id}"

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
        if parked is not None:
            self._send_parked(parked, None)   # its /next is answered 410: the runtime exits
        if self.handle is None:
            self._gone(exit_code=None)
        elif wait:
            self._last_reading_then_kill()
        else:
            self._kill_aside()

    def _kill_aside(self) -> None:
        """Kill on a thread of its own: the caller's answer does not wait for the engine."""
        threading.Thread(target=self._last_reading_then_kill, daemon=True, name=f"stop-{self.id}").start()

    def _last_reading_then_kill(self) -> None:
        # The last call's peak memory is read after its answer (ExecInfo.memory_mb): read it now,
        # while the process (or cgroup) still exists, so that reading finds it in the handle.
        handle = self.handle
        assert handle is not None
        with self._cond:
            if self._killed:
                return
            self._killed = True
        try:
            handle.max_memory_mb()
        except Exception:
            log.debug("%s: no last memory reading before the kill", self.id, exc_info=True)
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
        self.endpoint.stop()
        if self.handle is not None:
            self.handle.remove()
        if not expected:
            log.warning("%s exited unexpectedly (code %s)", self.id, exit_code)
        self._on_gone(self)

    def _exit_outcome(self, code: int | None, request_id: str) -> Outcome:
        if self._init_error is not None:
            body, etype = self._init_error
            return Outcome("init_error", body, etype)
        how = f"signal: {_signal_name(-code)}" if code is not None and code < 0 else f"exit status {code}"
        return Outcome("crash", lambda_error(
            f"RequestId: {request_id} Error: Runtime exited with error: {how}", "Runtime.ExitError"),
            "Runtime.ExitError")

    # -- one invocation --
    def hand(self, inv: Invocation, wake: Callable[[], None] | None = None) -> bool:
        """From the thread that granted `inv` its slot: this reserved (BUSY) container will take the
        oldest call on the pool's hand-off line (`inv`, or an older one if its own container asks
        later), and `inv` goes out as soon as one of the expecting containers asks. The caller's
        thread then only waits for it (`run(inv, handed=True)` on `inv.taken_by`). `wake` (the
        caller's wake-up) is called once the invocation has gone out to the runtime, so the
        caller's thread does not compete with the hand-off for the GIL."""
        with self._cond:
            if self.state is not State.BUSY or self._pending is not None or self._current is not None:
                return False
            if not self._line.put(self.id, inv, wake):
                return False
            parked, self._parked = self._parked, None
            if parked is None:
                self._cond.notify_all()
                return True
            # Its runtime asked already (parked): it takes the line's oldest call now, sent from
            # this granting thread. Waking the caller's thread to send it instead let the next
            # call, granted meanwhile, start first. The write is one sendall to a runtime that is
            # waiting to read it (the admission's lock is held meanwhile, for this function only).
            taken = self._take_from_line()
            assert taken is not None   # put() above made this container expect a call
            out = self._go_out(taken)
        self._send_parked(parked, out)
        return True

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
        if not self._ready.wait(self.start_timeout_s):
            self._fail(inv, Outcome("init_error", lambda_error(
                f"container did not finish init within {self.start_timeout_s:.0f} s", "Runtime.InitTimeout"),
                "Runtime.InitTimeout"))
        elif not inv.done.wait(timeout_s + HANDOFF_SLACK_S):
            self._fail(inv, Outcome("timeout", lambda_error(
                f"RequestId: {inv.request_id} Error: Task timed out after {timeout_s:.2f} seconds",
                "Sandbox.Timedout"), "Sandbox.Timedout"))
        assert inv.outcome is not None
        self.invocations += 1
        return inv.outcome

    def _send_parked(self, parked: Send, out: NextInvocation | None) -> None:
        try:
            parked(out)
        except OSError:
            pass   # the runtime is gone: _gone() finishes the invocation as a crash
        if out is not None:
            self.flush_answers()

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
    def next_invocation(self, send: Send | None = None) -> NextInvocation | object | None:
        with self._cond:
            if self.state is State.STARTING:
                self.init_ms = (self.clock.monotonic() - self.created_at) * 1000
                self._to(State.BUSY if self._pending is not None else State.READY)
                self._ready.set()
            while True:
                if self._pending is not None:
                    inv, self._pending = self._pending, None
                    break
                taken = self._take_from_line()
                if taken is not None:
                    inv = taken
                    break
                if self.state not in (State.READY, State.BUSY):
                    return None
                if send is not None:
                    self._parked = send   # the next call's thread answers it (run(), hand(), stop())
                    return SENT
                self._cond.wait()
            return self._go_out(inv)

    def _take_from_line(self) -> Invocation | None:
        """Caller holds self._cond: the line's oldest call, if this container expects one; its
        caller's wake-up waits until it went out (flush_answers)."""
        taken = self._line.take(self.id)
        if taken is None:
            return None
        inv, wake = taken
        inv.taken_by = self
        if wake is not None:
            self._wakes.append(wake)
        return inv

    def _go_out(self, inv: Invocation) -> NextInvocation:
        """Caller holds self._cond: `inv` is the one out to the runtime from now."""
        self._current = inv
        now = self.clock.monotonic()
        wall = self.clock.wall_of(now)   # one reading: records of one slot cannot overlap
        self._spans[inv.request_id] = [now, wall]
        inv.deadline_ms = int((wall + self.function.timeout_s) * 1000)
        return NextInvocation(inv.request_id, inv.payload, inv.deadline_ms, inv.function_arn, inv.trace_id)

    def arrived(self, request_id: str) -> bool:
        """An answer for `request_id` came in: True if that is the invocation out here and not
        finished (timed out, crashed); its execution ends now, before the 202 is written."""
        with self._cond:
            if self._out(request_id) is None:
                return False
            span = self._spans.get(request_id)
            if span is not None and len(span) == 2:
                span.append(self.clock.monotonic())
            return True

    def _out(self, request_id: str) -> Invocation | None:
        """Caller holds self._cond: the invocation out here, if it is `request_id` and unfinished."""
        inv = self._current
        return inv if inv is not None and inv.request_id == request_id and not inv.done.is_set() else None

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        return self._complete(request_id, Outcome("success", body))

    def invocation_error(self, request_id: str, body: bytes, error_type: str) -> bool:
        return self._complete(request_id, Outcome("function_error", body, _error_type(body, error_type)))

    def _complete(self, request_id: str, outcome: Outcome) -> bool:
        with self._cond:   # after arrived(), which ended its span; checked again: it may have timed out since
            inv = self._out(request_id)
            if inv is None:
                return False
            self._current = None
        if outcome.status in ("success", "function_error"):
            try:
                self._on_answer(self, inv)   # may free this container and hand it the next call
            except Exception:
                log.exception("%s: freeing the container after its answer failed", self.id)
        with self._cond:
            if (self._pending is not None or self._line.expects(self.id)) and self.state is State.BUSY:
                # The next call is already here: its /next (which follows this answer on the same
                # connection) goes out first, then this caller is woken (flush_answers).
                self._deferred.append((inv, outcome))
                return True
        return inv.finish(outcome)

    def span(self, request_id: str) -> tuple[float, float, float] | None:
        """(monotonic out, wall out, monotonic answered) of a finished invocation, if it was answered."""
        with self._cond:
            s = self._spans.pop(request_id, None)
        return (s[0], s[1], s[2]) if s is not None and len(s) == 3 else None

    def flush_answers(self) -> None:
        """After an invocation went out: wake the callers whose answers and hand-offs waited for it."""
        with self._cond:
            deferred, self._deferred = self._deferred, []
            wakes, self._wakes = self._wakes, []
        for inv, outcome in deferred:
            inv.finish(outcome)
        for wake in wakes:
            wake()

    def init_error(self, body: bytes, error_type: str) -> None:
        # awslambdaric exits right after posting this; _gone() answers the caller with it.
        self._init_error = (body, _error_type(body, error_type))
        log.warning("%s: init error %s", self.id, self._init_error[1])

    def _output(self, line: str) -> None:
        # An invocation's lines travel with its START/END/REPORT block (record.py);
        # only output outside any invocation (init, shutdown) is forwarded directly.
        inv = self._current
        if inv is not None:
            inv.logs.append(line)
        else:
            self._on_log(self.id, line)

    # -- visibility --
    def describe(self, now: float) -> dict:
        return {"id": self.id, "function": self.function.name, "backend": self.backend.name,
                "state": self.state.value, "code_sha256": self.code_sha,
                "init_ms": None if self.init_ms is None else round(self.init_ms, 1),
                "invocations": self.invocations,
                "idle_s": round(now - self.last_used, 3) if self.state is State.READY else 0.0,
                "age_s": round(now - self.created_at, 3),
                "handle": getattr(self.handle, "id", None)}


def _error_type(body: bytes, fallback: str) -> str:
    try:
        return json.loads(body).get("errorType") or fallback
    except Exception:
        return fallback


def _signal_name(num: int) -> str:
    import signal
    try:
        return signal.Signals(num).name.removeprefix("SIG").lower().replace("kill", "killed")
    except ValueError:
        return str(num)


_SOCKET_DIR: Path | None = None


def _socket_dir() -> Path:
    """A short per-process directory: a Unix socket path may not exceed 107 bytes, and
    MK1_HOME (or a test's tmp dir) can be deep."""
    global _SOCKET_DIR
    if _SOCKET_DIR is None:
        import tempfile
        _SOCKET_DIR = Path(tempfile.mkdtemp(prefix="mk1-rt-"))
    return _SOCKET_DIR


def _short_uid() -> str:
    import uuid
    return uuid.uuid4().hex[:6]
