"""Fake backend: containers that run no process, for unit tests of the pool and the container.

A fake container's runtime is a Python handler called in-process. It drives the container's
RuntimeHost methods (the ones the Runtime API endpoint calls for a real runtime) synchronously,
on whichever thread hands it work:

- start(): the init (optional), then the first /next, which takes the cold call; the handler
  runs and its answer is posted; then /next again, with nothing to take: it parks (SENT).
- a warm call's thread (run(), hand()) sends the next event on the parked /next: the handler
  runs on that thread, answers, and parks again before the send returns.
- a stop answers the parked /next with None (410): the fake runtime exits with code 0.

So a call's outcome is known when pool.run() returns, with no thread of the fake's own.

    backend = FakeBackend(handler=lambda event, ctx: {"echo": event})
    pool = FunctionPool("F", backend, code_dir_for, work_root, clock=FakeClock())
    outcome, info = pool.run(inv, config)
    assert backend.calls[-1].container_id == info.container_id

Scripting failures: an `init` that raises is an init error (posted, then the runtime exits 1); a
handler that raises is a function error; raising `Crash(code)` from either ends the runtime with
that exit code and no answer (a crash). `crash(container_id)` kills an idle one from outside.

The container still watches its handle on a monitor thread (handle.wait()) and finishes a dead
container there; `settle()` waits (bounded) until every exited fake container is gone from its pool.

The container also still opens a Runtime API endpoint the fake never calls; stopping it waits out
its serve loop's 0.2 s poll. Tests that stop many containers swap it for `NoEndpoint`:

    monkeypatch.setattr("chalicelib.execute.container.RuntimeEndpoint", NoEndpoint)
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from chalicelib.clock import SystemClock
from chalicelib.execute.backends.base import ContainerSpec
from chalicelib.execute.runtime_api import SENT, NextInvocation, RuntimeHost

SIGKILL_EXIT = -9


class Crash(Exception):
    """Raised by a fake handler or init: the runtime exits with `code` without answering."""

    def __init__(self, code: int = 1):
        super().__init__(f"fake runtime exits with code {code}")
        self.code = code


@dataclass
class FakeCall:
    """One invocation a fake runtime took: which container ran which request."""
    container_id: str
    request_id: str
    event: Any
    status: str = "running"    # success | function_error | crash


@dataclass
class FakeContext:
    """What the handler gets as its Lambda context (the fields tests use)."""
    aws_request_id: str
    invoked_function_arn: str
    function_name: str
    memory_limit_in_mb: int
    container_id: str
    deadline_ms: int
    log: Callable[[str], None]             # a line of the container's output (the call's log)
    _clock: Any

    def get_remaining_time_in_millis(self) -> int:
        return max(int(self.deadline_ms - self._clock.time() * 1000), 0)


Handler = Callable[[Any, FakeContext], Any]
Init = Callable[[ContainerSpec], None]


def _host_of(spec: ContainerSpec) -> RuntimeHost:
    """The container behind a spec. Stop-gap: the spec carries no host, but its on_output is the
    container's bound method (see the report's seam: a host on the spec, or an endpoint factory)."""
    host = getattr(spec.on_output, "__self__", None)
    if host is None or not hasattr(host, "next_invocation"):
        raise TypeError(f"{spec.container_id}: cannot find the container behind this spec; "
                        "pass FakeBackend(host_for=...) to say where it is")
    return host


class FakeHandle:
    """A started fake container: its runtime, and an exit code that wait() blocks for."""
    restored = False

    def __init__(self, backend: "FakeBackend", spec: ContainerSpec, host: RuntimeHost, seq: int):
        self.id = f"fake-{seq}"
        self.spec = spec
        self.host = host
        self._backend = backend
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._waiting = threading.Event()          # the container's monitor called wait()
        self._waiter: threading.Thread | None = None
        self.exit_code: int | None = None
        self.killed = False
        self.removed = False

    # -- Handle --
    def wait(self) -> int:
        self._waiter = threading.current_thread()
        self._waiting.set()
        self._exited.wait()
        assert self.exit_code is not None
        return self.exit_code

    def kill(self) -> None:
        if self.exit(SIGKILL_EXIT):
            self.killed = True

    def max_memory_mb(self) -> float | None:
        return self._backend.memory_mb

    def remove(self) -> None:
        self.removed = True

    # -- the fake runtime --
    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    def exit(self, code: int) -> bool:
        """The runtime ends with `code` (the first exit wins); wait() returns it."""
        with self._lock:
            if self._exited.is_set():
                return False
            self.exit_code = code
            self._exited.set()
            return True

    def boot(self, init: Init | None) -> None:
        """In backend.start(): the runtime's init, then its loop until it parks or exits."""
        if init is not None:
            try:
                init(self.spec)
            except Crash as e:
                self.exit(e.code)
                return
            except Exception as e:
                self.host.init_error(_error_body(e), f"Runtime.{type(e).__name__}")
                self.exit(1)   # awslambdaric exits right after posting its init error
                return
        self._serve()

    def _serve(self) -> None:
        """/next until there is nothing to take (parked: a later send() goes on) or a stop."""
        while not self.exited:
            nxt = self.host.next_invocation(self._deliver)
            if nxt is SENT:
                return
            if nxt is None:
                self.exit(0)
                return
            self.host.flush_answers()   # as the endpoint does once it has written a /next itself
            self._invoke(nxt)           # type: ignore[arg-type]

    def _deliver(self, out: NextInvocation | None) -> None:
        """The parked /next's Send: another thread answers it (a warm call, a grant, a stop)."""
        if out is None:
            self.exit(0)    # 410: the container is stopping, the runtime exits
            return
        self.host.flush_answers()
        self._invoke(out)
        self._serve()

    def _invoke(self, nxt: NextInvocation) -> None:
        if self.exited:
            return
        call = self._backend._record(self.spec.container_id, nxt)
        ctx = FakeContext(nxt.request_id, nxt.function_arn, self.spec.function_name, self.spec.memory_mb,
                          self.spec.container_id, nxt.deadline_ms, self.spec.on_output, self._backend.clock)
        try:
            result = self._backend.handler(call.event, ctx)
        except Crash as e:
            call.status = "crash"
            self.exit(e.code)
            return
        except Exception as e:
            call.status = "function_error"
            if self.host.arrived(nxt.request_id):
                self.host.invocation_error(nxt.request_id, _error_body(e), "Unhandled")
            return
        call.status = "success"
        body = result if isinstance(result, bytes) else json.dumps(result).encode()
        if self.host.arrived(nxt.request_id):
            self.host.invocation_response(nxt.request_id, body)


class NoEndpoint:
    """A stand-in for RuntimeEndpoint when the runtime is a fake: no port, no thread, nothing to
    wait for on stop. Patched in by tests until Container takes an endpoint factory."""

    def __init__(self, host: RuntimeHost, socket_path=None):
        self.address = "fake-runtime-api:0"
        self.socket_path = socket_path

    def start(self) -> "NoEndpoint":
        return self

    def stop(self) -> None:
        pass


class FakeBackend:
    """Backend "fake": see the module docstring. Records what ran where, for assertions."""
    name = "fake"
    needs_socket = False

    def __init__(self, handler: Handler | None = None, init: Init | None = None, *, clock=None,
                 memory_mb: float | None = 42.0,
                 host_for: Callable[[ContainerSpec], RuntimeHost] = _host_of):
        self.handler: Handler = handler or (lambda event, ctx: {"ok": True})
        self.init = init
        self.clock = clock or SystemClock()
        self.memory_mb = memory_mb
        self.host_for = host_for
        self._lock = threading.Lock()
        self.started: list[ContainerSpec] = []
        self.handles: dict[str, FakeHandle] = {}     # container id -> its handle
        self.calls: list[FakeCall] = []
        self.start_error: Exception | None = None    # raised by the next start() (then cleared)

    # -- Backend --
    def prepare(self, progress: Callable[[str], None] = print) -> None:
        pass

    def start(self, spec: ContainerSpec) -> FakeHandle:
        with self._lock:
            error, self.start_error = self.start_error, None
            if error is not None:
                raise error
            self.started.append(spec)
            handle = FakeHandle(self, spec, self.host_for(spec), len(self.started))
            self.handles[spec.container_id] = handle
        handle.boot(self.init)
        return handle

    def cleanup_orphans(self) -> int:
        return 0

    # -- for tests --
    def crash(self, container_id: str, code: int = SIGKILL_EXIT) -> None:
        """The container's runtime dies now (e.g. OOM-killed while idle)."""
        self.handles[container_id].exit(code)

    def calls_on(self, container_id: str) -> list[str]:
        """Request ids that container took, in order."""
        with self._lock:
            return [c.request_id for c in self.calls if c.container_id == container_id]

    def ran_on(self) -> list[str]:
        """The container id of each call, in the order the calls went out."""
        with self._lock:
            return [c.container_id for c in self.calls]

    def settle(self, timeout_s: float = 5.0) -> None:
        """Wait until every fake container that has exited is gone: the monitor thread that saw its
        wait() return has finished (the container is STOPPED and its pool has forgotten it).
        Bounded in real time: these are the container's own threads, not time under test."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            exited = [h for h in self.handles.values() if h.exited]
        for h in exited:
            if not h._waiting.wait(max(deadline - time.monotonic(), 0)):
                raise TimeoutError(f"{h.spec.container_id}: no monitor waited for the fake runtime")
            assert h._waiter is not None
            h._waiter.join(max(deadline - time.monotonic(), 0))
            if h._waiter.is_alive():
                raise TimeoutError(f"{h.spec.container_id}: still being stopped after {timeout_s} s")

    def _record(self, container_id: str, nxt: NextInvocation) -> FakeCall:
        try:
            event = json.loads(nxt.payload) if nxt.payload else None
        except ValueError:
            event = nxt.payload
        call = FakeCall(container_id, nxt.request_id, event)
        with self._lock:
            self.calls.append(call)
        return call


def _error_body(e: Exception) -> bytes:
    return json.dumps({"errorMessage": str(e), "errorType": type(e).__name__, "stackTrace": []}).encode()
