"""Admit: may this call run now? Reserved concurrency and the function's queue.

A call that finds a free slot and nobody waiting takes the slot at once — no
network on that path. Otherwise it waits in the function's SQS queue, the queue
of record: the caller registers here and sends its message; a pump thread
receives messages in queue order and hands each free slot to the call whose
message came next. Async (Event) calls always go through the queue so they
survive a restart of the dispatcher.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from chalicelib.clock import SystemClock
from chalicelib.errors import ClientGone, Mk1Error, ServiceUnavailable, TooManyRequests
from chalicelib.admit.queues import WorkQueue

log = logging.getLogger("mk1.admit")

REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
DEFAULT_UNRESERVED_CAP = 10      # a function with no reserved concurrency (mk1 always sets 3)
SWEEP_EVERY_S = 2.0              # look for work nobody here announced (a restart's leftovers)
WAITER_CHECK_S = 0.25            # how often a waiting caller checks its deadline and connection
PREFETCH = 10                    # messages held beyond the cap, ready for the next free slot


@dataclass
class Waiter:
    request_id: str
    deadline: float
    enqueued: float
    event: threading.Event = field(default_factory=threading.Event)
    granted: bool = False
    cancelled: bool = False
    receipt: str | None = None
    lease: int | None = None        # cluster mode: the global slot granted to this call
    failed: Exception | None = None  # its queue message could not be sent
    # Called (under the lock) as the slot is granted, with the waiter's wake-up: True if it handed
    # the call to a container itself and will wake the waiter once the call went out.
    on_grant: Callable[[Callable[[], None]], bool] | None = None
    answer: object | None = None     # cluster mode: the SyncResult (or error) of a run on another dispatcher
    elsewhere: bool = False          # cluster mode: another dispatcher claimed the call and runs it
    granted_at: float | None = None  # monotonic, when a slot was handed to it
    entered_at: float = 0.0          # epoch s, when it joined the queue (the usage record's `accepted`)
    next_watch: float = 0.0          # cluster mode: when to look at its runner again
    runner_missing: int = 0          # cluster mode: checks that found its runner holding no lease


class Slot:
    """One of the function's reserved executions; released exactly once. entered_at: when its call
    took a free slot or joined the queue (epoch s; wait_ms counts from there)."""

    def __init__(self, admission: "Admission", wait_ms: float, entered_at: float | None = None):
        self._admission, self.wait_ms = admission, wait_ms
        self.entered_at = entered_at
        self._once = threading.Lock()

    def release(self) -> None:
        # Thread-safe: the Runtime API thread may release it as the function answers (assign.py).
        if self._once.acquire(blocking=False):
            self._admission._release(self)

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


AsyncRunner = Callable[[dict, str, Slot], None]


class Admission:
    def __init__(self, function: str, work_queue: WorkQueue, cap: Callable[[], int | None], *,
                 clock=None, max_depth: int = 200, max_wait_s: float = 120.0,
                 run_async: AsyncRunner | None = None, instance_id: str | None = None):
        self.function = function
        self.queue = work_queue
        self._cap = cap
        self.clock = clock or SystemClock()
        self.max_depth, self.max_wait_s = max_depth, max_wait_s
        self.run_async = run_async
        self.instance_id = instance_id or uuid.uuid4().hex
        self._cond = threading.Condition()
        self.in_use = 0
        self._waiters: dict[str, Waiter] = {}
        self._held: deque[tuple[dict, str]] = deque()
        self._async_pending = 0
        # The waiter handed a slot whose thread has not woken yet: the next one is handed its slot
        # only then, so calls start in queue order (threads woken together start in any order).
        self._handoff: Waiter | None = None
        self._running = True
        self._last_sweep = 0.0
        self.peak_in_use = 0
        work_queue.hurry = lambda: len(self._held) < self.cap()   # see queues.SEND_LINGER_COVERED_S
        self._pump = threading.Thread(target=self._pump_loop, daemon=True, name=f"pump-{function}")
        self._pump.start()

    def cap(self) -> int:
        c = self._cap()
        return DEFAULT_UNRESERVED_CAP if c is None else c

    # -- sync calls --
    def acquire(self, request_id: str, alive: Callable[[], bool] = lambda: True,
                max_wait_s: float | None = None, work: Callable[[], dict] | None = None,
                on_grant: Callable[[Callable[[], None]], bool] | None = None) -> Slot:
        """A slot for this call, waiting in the queue if need be. `work` describes the call for a
        dispatcher that may run it elsewhere (cluster mode); one process needs only the id."""
        cap = self.cap()
        with self._cond:
            if cap == 0:
                raise TooManyRequests(f"{self.function} has reserved concurrency 0: every call is refused "
                                      f"until it is raised (put-function-concurrency).", REASON, 10)
            if self.in_use < cap and self._nobody_waiting():
                self._take()
                return Slot(self, 0.0, self.clock.time())
            waiting = self._waiting()
            if waiting >= self.max_depth:
                raise TooManyRequests(self._busy(cap, waiting) + f"; the queue is full ({self.max_depth}).",
                                      REASON, 1)
            # One reading for both clocks: the record's accepted + wait_ms is the grant's wall time
            # only if they name the same instant (read around the Waiter's creation, a thread switch
            # between them put a call's grant ~1 ms late).
            now = self.clock.monotonic()
            entered = self.clock.wall_of(now)
            w = Waiter(request_id, now + (self.max_wait_s if max_wait_s is None else max_wait_s), now)
            w.on_grant, w.entered_at = on_grant, entered
            self._waiters[request_id] = w
            self._wake_pump()
            # Sent by the queue's sender thread in registration order: SQS order is arrival order.
            self.queue.send_ordered({"request_id": request_id, "kind": "sync", "function": self.function,
                                     "owner": self.instance_id, "expires": self.clock.time() + (
                                         self.max_wait_s if max_wait_s is None else max_wait_s) + 5},
                                    on_fail=lambda err, w=w: self._send_failed(w, err))
        return self._wait(w, cap, alive)

    def _send_failed(self, w: Waiter, err: Exception) -> None:
        with self._cond:
            if w.granted or w.cancelled:
                return
            w.cancelled = True
            w.failed = err
            self._waiters.pop(w.request_id, None)
        w.event.set()

    def _wait(self, w: Waiter, cap: int, alive: Callable[[], bool]) -> Slot:
        try:
            return self._wait_for_grant(w, cap, alive)
        finally:
            with self._cond:
                if self._handoff is w:      # it is awake: the next waiter may be handed a slot
                    self._handoff = None
                    self._dispatch()

    def _wait_for_grant(self, w: Waiter, cap: int, alive: Callable[[], bool]) -> Slot:
        # A hand-off sets the event at once; the timeout only paces the deadline and
        # hang-up checks (kept coarse: a thousand waiters must not keep two cores busy).
        try:
            while not w.event.wait(WAITER_CHECK_S):
                self._watch(w)
                expired = self.clock.monotonic() >= w.deadline
                gone = not alive()
                if (expired or gone) and self._cancel(w):
                    if isinstance(w.failed, Mk1Error):
                        raise w.failed
                    if gone:
                        raise ClientGone(w.request_id)
                    raise TooManyRequests(self._busy(cap, self._waiting()) +
                                          f"; waited {self.max_wait_s:.0f} s without a free slot.", REASON, 1,
                                          after_wait=True)
        except (ClientGone, Mk1Error):
            raise
        except BaseException:
            # Whatever broke the wait, the call leaves the queue: if a slot reached it meanwhile,
            # give that slot back, or the function would lose it for good.
            if not self._cancel(w) and w.granted:
                if w.receipt is not None:
                    self.queue.delete_later(w.receipt)
                self._granted_slot(w, 0.0).release()
            raise
        if isinstance(w.answer, Exception):
            raise w.answer    # the other dispatcher's error, for this caller
        if w.answer is not None:
            return w.answer   # type: ignore[return-value]
        if isinstance(w.failed, Mk1Error):
            raise w.failed
        if w.failed is not None:
            raise ServiceUnavailable(f"could not queue the call in SQS: {w.failed}")
        if w.receipt is not None:
            self.queue.delete_later(w.receipt)
        # Time in the queue: until the slot was granted (a handed call may start before its thread wakes).
        return self._granted_slot(w, ((w.granted_at or self.clock.monotonic()) - w.enqueued) * 1000)

    def _granted_slot(self, w: Waiter, wait_ms: float) -> Slot:
        return Slot(self, wait_ms, w.entered_at)

    def _watch(self, w: Waiter) -> None:
        """Called at every deadline check of a waiting call (cluster mode watches its runner)."""

    def _cancel(self, w: Waiter) -> bool:
        """True if cancelled; False if a slot was granted first (then the caller must use it)."""
        with self._cond:
            if w.granted:
                return False
            w.cancelled = True
            self._waiters.pop(w.request_id, None)
            return True

    # -- async calls --
    def enqueue_async(self, body: dict, delay_s: int = 0) -> None:
        with self._cond:
            waiting = self._waiting()
            if waiting >= self.max_depth:
                raise TooManyRequests(self._busy(self.cap(), waiting) + f"; the queue is full ({self.max_depth}).",
                                      REASON, 1)
            self._async_pending += 1
            self._cond.notify_all()
        try:
            self.queue.send({**body, "kind": "async", "owner": self.instance_id}, delay_s)
        except Exception as e:
            with self._cond:
                self._async_pending -= 1
            raise ServiceUnavailable(f"could not queue the call in SQS: {e}") from e

    # -- slots --
    def _nobody_waiting(self) -> bool:
        return not self._waiters and not self._held and self._async_pending == 0

    def _waiting(self) -> int:
        return len(self._waiters) + self._async_pending + sum(
            1 for b, _ in self._held if b.get("kind") == "async" and b.get("owner") != self.instance_id)

    def _take(self) -> None:
        self.in_use += 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)

    def _release(self, slot: Slot | None = None) -> None:
        with self._cond:
            self.in_use -= 1
            self._dispatch()
            self._wake_pump()

    def _wake_pump(self) -> None:
        """Caller holds the lock: wake the pump if it has a receive to make now. It refills the held
        messages only as they run low, and sweeps on a timer: woken at every queued call and freed
        slot, it mostly found nothing to do, and each wake put a thread switch and a GIL hand-over on
        the path of the call (in a freed slot's case, between the answer and the next event)."""
        if self._want(self.clock.monotonic())[0]:
            self._cond.notify_all()

    def _dispatch(self) -> None:
        """Hand free slots to held messages, in queue order. Caller holds the lock."""
        while self._held and self.in_use < self.cap():
            if self._handoff is not None and self._held[0][0].get("kind") != "async":
                return
            body, receipt = self._held.popleft()
            if len(self._held) < self.cap():
                self.queue.nudge()   # a batch of sends lingering because these covered the slots
            if body.get("kind") == "async":
                if body.get("owner") == self.instance_id:
                    self._async_pending = max(0, self._async_pending - 1)
                if self.run_async is None:
                    continue
                self._take()
                slot = Slot(self, 0.0)
                threading.Thread(target=self.run_async, args=(body, receipt, slot), daemon=True,
                                 name=f"async-{body.get('request_id')}").start()
                continue
            w = self._waiters.pop(body.get("request_id"), None)
            if w is None or w.cancelled:
                # Its caller gave up, or belonged to a dispatcher that is gone: nothing to run.
                self.queue.delete_later(receipt)
                continue
            self._take()
            w.granted, w.receipt, w.granted_at = True, receipt, self.clock.monotonic()
            handed = False
            if w.on_grant is not None:
                try:
                    handed = w.on_grant(w.event.set)
                except Exception:
                    log.exception("%s: handing %s to a container failed", self.function, w.request_id)
            if handed:
                continue    # it started here, in queue order; its thread is woken once it went out
            self._handoff = w
            w.event.set()

    # -- the pump: SQS -> held, in order --
    def _want(self, now: float) -> tuple[bool, int]:
        expected = len(self._waiters) + self._async_pending
        if self._receive_room() <= 0:
            return False, 0
        if expected > len(self._held):
            # Deep queue: refill in batches once the held messages run low (one ReceiveMessage per
            # ~10 calls, not per call), still ahead of the free slots.
            if len(self._held) > self.cap():
                return False, 0
            return True, 1
        if self.in_use < self.cap() and now - self._last_sweep >= SWEEP_EVERY_S:
            return True, 0
        return False, 0

    def _pump_loop(self) -> None:
        while True:
            with self._cond:
                while self._running:
                    want, wait_s = self._want(self.clock.monotonic())
                    if want:
                        break
                    self._cond.wait(0.5)
                    self._dispatch()  # the cap may have been raised live
                if not self._running:
                    return
                room = self._receive_room()
                if wait_s == 0:
                    self._last_sweep = self.clock.monotonic()
            try:
                messages = self.queue.receive(room, wait_s)
            except Exception as e:
                log.warning("%s: receiving from SQS failed: %s", self.function, e)
                threading.Event().wait(0.5)
                continue
            self._on_messages(messages)

    def _receive_room(self) -> int:
        """Caller holds the lock: how many messages the next receive may take."""
        return self.cap() + PREFETCH - len(self._held)

    def _on_messages(self, messages: list[tuple[dict, str]]) -> None:
        if messages:
            with self._cond:
                self._held.extend(messages)
                self._dispatch()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        self._pump.join(timeout=3)

    # -- visibility --
    def _busy(self, cap: int, waiting: int) -> str:
        return f"{self.function} is busy: {self.in_use} of {cap} executions running, {waiting} waiting"

    def describe(self) -> dict:
        with self._cond:
            return {"reserved_concurrency": self.cap(), "in_use": self.in_use, "waiting": self._waiting(),
                    "held": len(self._held), "peak_in_use": self.peak_in_use}
