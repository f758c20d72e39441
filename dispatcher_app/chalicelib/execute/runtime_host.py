"""The runtime's side of a container: what its Runtime API endpoint calls.

The runtime asks for the next event (`next_invocation`; parked when there is none, so the next
call's own thread sends it), posts the answer (`invocation_response` / `invocation_error`), or
reports a failed init. `RuntimeSide` is the part of `Container` (container.py) that serves these,
under the container's lock and state machine; it is a separate module so each side reads alone.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from chalicelib.execute import outcomes
from chalicelib.execute.runtime_api import SENT, NextInvocation, Send
from chalicelib.execute.states import State
from chalicelib.model import FunctionConfig, Invocation, Outcome

if TYPE_CHECKING:
    from chalicelib.clock import SystemClock
    from chalicelib.execute.handoff import HandOffLine

log = logging.getLogger("mk1.containers")


class RuntimeSide:
    # Set by Container.__init__ (container.py).
    id: str
    function: FunctionConfig
    state: State
    clock: "SystemClock"
    created_at: float
    _init_from: float                        # when its init (or restore) began
    init_ms: float | None
    _restore_error: tuple[bytes, str] | None
    _cond: threading.Condition
    _ready: threading.Event
    _pending: Invocation | None
    _current: Invocation | None
    _parked: Send | None
    _line: "HandOffLine"
    _deferred: list[tuple[Invocation, Outcome]]
    _wakes: list[Callable[[], None]]
    _init_error: tuple[bytes, str] | None
    _on_answer: Callable
    _on_log: Callable[[str, str], None]      # (log stream, line)
    log_stream: str

    def _to(self, new: State) -> None: ...   # Container's checked transition

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

    def _send_parked(self, parked: Send, out: NextInvocation | None) -> None:
        try:
            parked(out)
        except OSError:
            pass   # the runtime is gone: _gone() finishes the invocation as a crash
        if out is not None:
            self.flush_answers()

    def next_invocation(self, send: Send | None = None) -> NextInvocation | object | None:
        with self._cond:
            if self.state is State.STARTING:
                self.init_ms = (self.clock.monotonic() - self._init_from) * 1000
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
        inv.out_at, inv.out_wall = now, wall
        inv.deadline_ms = int((wall + self.function.timeout_s) * 1000)
        return NextInvocation(inv.request_id, inv.payload, inv.deadline_ms, inv.function_arn, inv.trace_id,
                              inv.client_context)

    def arrived(self, request_id: str) -> bool:
        """An answer for `request_id` came in: True if that is the invocation out here and not
        finished (timed out, crashed); its execution ends now, before the 202 is written."""
        with self._cond:
            inv = self._out(request_id)
            if inv is None:
                return False
            if inv.answered_at is None:
                inv.answered_at = self.clock.monotonic()
            return True

    def _out(self, request_id: str) -> Invocation | None:
        """Caller holds self._cond: the invocation out here, if it is `request_id` and unfinished."""
        inv = self._current
        return inv if inv is not None and inv.request_id == request_id and not inv.done.is_set() else None

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        return self._complete(request_id, Outcome("success", body))

    # -- a streamed answer (Lambda-Runtime-Function-Response-Mode: streaming) --
    def stream_open(self, request_id: str, content_type: str) -> bool:
        """The runtime begins a streamed answer for `request_id`: False if that is not the one out."""
        with self._cond:
            inv = self._out(request_id)
            if inv is None:
                return False
            if inv.stream is not None:
                inv.stream.streamed, inv.stream.content_type = True, content_type
                inv.stream.put("type", content_type)
            else:
                inv.streamed_body = bytearray()
            return True

    def stream_chunk(self, request_id: str, data: bytes) -> bool:
        """One chunk as it arrives: to a streaming caller at once; for a buffered caller kept up to
        Invoke's limit (False once over it: the caller gets Function.ResponseSizeTooLarge)."""
        inv = self._current
        if inv is None or inv.request_id != request_id or inv.done.is_set():
            return False
        if inv.stream is not None:
            inv.stream.put("chunk", data)
            return True
        body = inv.streamed_body
        if body is None or len(body) + len(data) > outcomes.RESPONSE_LIMIT:
            inv.streamed_body = None
            return False
        body += data
        return True

    def stream_done(self, request_id: str) -> bool:
        """The streamed answer ended well: its outcome (the kept body for a buffered caller)."""
        inv = self._current
        if inv is not None and inv.request_id == request_id and inv.stream is None and inv.streamed_body is None:
            return self.too_large(request_id)
        body = bytes(inv.streamed_body) if inv is not None and inv.streamed_body is not None else b""
        return self._complete(request_id, Outcome("success", body))

    def too_large(self, request_id: str) -> bool:
        return self._complete(request_id, outcomes.response_too_large())

    def invocation_error(self, request_id: str, body: bytes, error_type: str) -> bool:
        return self._complete(request_id, Outcome("function_error", body, outcomes.error_type_of(body, error_type)))

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

    def span(self, inv: Invocation) -> tuple[float, float, float] | None:
        """(monotonic out, wall out, monotonic answered) of a finished invocation, if it was answered."""
        with self._cond:
            if inv.out_at is None or inv.out_wall is None or inv.answered_at is None:
                return None
            return inv.out_at, inv.out_wall, inv.answered_at

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
        self._init_error = (body, outcomes.error_type_of(body, error_type))
        log.warning("%s: init error %s", self.id, self._init_error[1])

    def restore_error(self, body: bytes) -> None:
        # An after-restore hook raised: awslambdaric exits (65); the caller gets AWS's SnapStartException.
        self._restore_error = (outcomes.restore_failed(body), "SnapStartException")
        log.warning("%s: after-restore hook failed", self.id)

    def _output(self, line: str) -> None:
        # An invocation's lines travel with its START/END/REPORT block (record.py);
        # only output outside any invocation (init, shutdown) is forwarded directly.
        inv = self._current
        if inv is not None:
            inv.logs.append(line)
        else:
            self._on_log(self.log_stream, line)

    # -- visibility --
