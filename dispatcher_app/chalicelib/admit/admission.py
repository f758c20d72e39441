"""Admit: may this call run now? Reserved concurrency and the function's queue.

A call that finds a free slot and nobody waiting takes the slot at once — no network on
that path. Otherwise it waits in the function's SQS queue, the queue of record: the caller
registers here (a Waiter) and sends its message; a pump thread receives messages in queue
order and a slot source hands each free slot to the call whose message came next. Async
(Event) calls always go through the queue so they survive a restart of the dispatcher.

Where the slots come from is the slot source's business, passed in (composition):
admit/local_slots.py counts them in this process; cluster/slots.py holds them as DynamoDB
leases shared by several dispatchers. This module is what both have in common: the waiting
callers, their deadlines and hang-ups, the async queue and the pump thread.
"""
from __future__ import annotations

import logging
import threading
import uuid
from typing import Callable

from chalicelib.admit.queues import WorkQueue
from chalicelib.admit.waiting import AsyncRunner, Slot, SlotSource, Waiter
from chalicelib.clock import SystemClock
from chalicelib.errors import ClientGone, Mk1Error, ServiceUnavailable, TooManyRequests

log = logging.getLogger("mk1.admit")

REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
DEFAULT_UNRESERVED_CAP = 10      # a function with no reserved concurrency (mk1 always sets 3)
HANGUP_CHECK_S = 0.25            # how often the watch looks for waiting callers that hung up
DEADLINE_CHECK_MAX_S = 10.0      # a waiting thread's longest sleep (a deadline on a fake clock moves)


class Admission:
    def __init__(self, function: str, work_queue: WorkQueue, cap: Callable[[], int | None], slots: SlotSource, *,
                 clock=None, max_depth: int = 200, max_wait_s: float = 120.0,
                 run_async: AsyncRunner | None = None, instance_id: str | None = None):
        self.function = function
        self.queue = work_queue
        self._cap = cap
        self.clock = clock or SystemClock()
        self.max_depth, self.max_wait_s = max_depth, max_wait_s
        self.run_async = run_async
        self.instance_id = instance_id or uuid.uuid4().hex
        self.cond = threading.Condition()
        self.in_use = 0
        self.peak_in_use = 0
        self.waiters: dict[str, Waiter] = {}   # by request id: a queue message names its caller so
        self.async_pending = 0                 # Event calls of ours sent, not yet received back
        self.running = True
        self.slots = slots
        slots.bind(self)
        self._stopped = threading.Event()
        self._pump = threading.Thread(target=self._pump_loop, daemon=True, name=f"pump-{function}")
        self._pump.start()
        self._watch = threading.Thread(target=self._watch_loop, daemon=True, name=f"watch-{function}")
        self._watch.start()

    def cap(self) -> int:
        c = self._cap()
        return DEFAULT_UNRESERVED_CAP if c is None else c

    # -- sync calls --
    def acquire(self, request_id: str, alive: Callable[[], bool] = lambda: True,
                max_wait_s: float | None = None, work: Callable[[], dict] | None = None,
                on_grant: Callable[[Callable[[], None]], bool] | None = None, no_wait: bool = False):
        """A slot for this call, waiting in the queue if need be. `work` describes the call for a
        dispatcher that may run it elsewhere (cluster mode); one process needs only the id. Returns
        the Slot, or (cluster mode) the result of the call run by another dispatcher. no_wait: AWS's
        behaviour at the cap, a 429 at once instead of a place in the queue."""
        cap = self.cap()
        if cap == 0:
            raise TooManyRequests(f"{self.function} has reserved concurrency 0: every call is refused "
                                  f"until it is raised (put-function-concurrency).", REASON, None if no_wait else 10)
        slot = self.slots.take_now(request_id, cap)
        if slot is not None:
            return slot
        if no_wait:
            return self._now_or_never(cap)
        body = self.slots.message(request_id, work)   # before the lock: it may put a payload in S3
        wait_s = self.max_wait_s if max_wait_s is None else max_wait_s
        with self.cond:
            slot = self.slots.take_free_locked(cap)
            if slot is not None:
                return slot
            waiting = self.waiting()
            if waiting >= self.max_depth:
                raise TooManyRequests(self.busy(cap, waiting) + f"; the queue is full ({self.max_depth}).",
                                      REASON, 1)
            # One reading for both clocks: the record's accepted + wait_ms is the grant's wall time
            # only if they name the same instant (read around the Waiter's creation, a thread switch
            # between them put a call's grant ~1 ms late).
            now = self.clock.monotonic()
            w = self.slots.new_waiter_locked(request_id, now + wait_s, now, self.clock.wall_of(now))
            w.on_grant, w.alive = on_grant, alive
            self.waiters[request_id] = w
            self.wake_pump_locked()
            # Sent by the queue's sender thread in registration order: SQS order is arrival order.
            self.queue.send_ordered({**body, "request_id": request_id, "kind": "sync", "function": self.function,
                                     "owner": self.instance_id, "expires": self.clock.time() + wait_s + 5},
                                    on_fail=lambda err, w=w: self._send_failed(w, err))
        return self._wait(w, cap)

    def _now_or_never(self, cap: int) -> Slot:
        with self.cond:
            slot = self.slots.take_free_locked(cap, queue_ahead=False)
            if slot is not None:
                return slot
            detail = (f"{self.busy(cap, self.waiting())}; the function throttles as AWS does "
                      f"(tag mk1:throttle=aws): no waiting in its queue.")
        raise TooManyRequests(detail, REASON, None)

    def _send_failed(self, w: Waiter, err: Exception) -> None:
        with self.cond:
            if w.granted or w.cancelled:
                return
            w.cancelled = True
            w.failed = err
            self.waiters.pop(w.request_id, None)
        w.event.set()

    def _wait(self, w: Waiter, cap: int):
        try:
            return self._wait_for_grant(w, cap)
        finally:
            self.slots.awake(w)

    def _wait_for_grant(self, w: Waiter, cap: int):
        # The event is set by a hand-off, a failure, or the watch when the caller hung up. The
        # thread wakes on its own only at its deadline (or when the slot source watches a waiting
        # call, cluster mode): a thousand waiting threads each waking every quarter second to look
        # at its own connection were a thousand GIL hand-offs in front of every call being taken in.
        try:
            while not w.event.wait(self._sleep_s(w)):
                self.slots.watch(w)
                if self.clock.monotonic() >= w.deadline and self.slots.cancel(w):
                    self._gave_up(w, cap, gone=False)
        except (ClientGone, Mk1Error):
            raise
        except BaseException:
            # Whatever broke the wait, the call leaves the queue: if a slot reached it meanwhile,
            # give that slot back, or the function would lose it for good.
            if not self.slots.cancel(w) and w.granted:
                if w.receipt is not None:
                    self.queue.delete_later(w.receipt)
                self.slots.granted_slot(w, 0.0).release()
            raise
        if w.gone:
            self._gave_up(w, cap, gone=True)
        return self._granted(w)

    def _sleep_s(self, w: Waiter) -> float:
        until = min(w.deadline - self.clock.monotonic(), DEADLINE_CHECK_MAX_S)
        if self.slots.watch_every_s is not None:
            until = min(until, self.slots.watch_every_s)
        return max(until, 0.0)

    def _watch_loop(self) -> None:
        """Callers that hung up while waiting leave the queue: one thread looks at every waiting
        caller's connection (a peek each, ~2 us) and wakes only those that are gone."""
        while not self._stopped.wait(HANGUP_CHECK_S):
            with self.cond:
                waiting = [w for w in self.waiters.values() if not (w.granted or w.cancelled)]
            for w in waiting:
                if not w.alive():
                    self.hung_up(w)

    def hung_up(self, w: Waiter) -> None:
        """Its thread leaves with ClientGone (a 'cancelled' record, unbilled) unless a slot reached
        it first, which it then uses (its answer goes nowhere; the call was the caller's)."""
        if self.slots.cancel(w):
            w.gone = True
            w.event.set()

    def _gave_up(self, w: Waiter, cap: int, gone: bool) -> None:
        if isinstance(w.failed, Mk1Error):
            raise w.failed
        if gone:
            raise ClientGone(w.request_id)
        raise TooManyRequests(self.busy(cap, self.waiting()) +
                              f"; waited {self.max_wait_s:.0f} s without a free slot.", REASON, 1, after_wait=True)

    def _granted(self, w: Waiter):
        result = self.slots.result_of(w)
        if isinstance(result, Exception):
            raise result      # the other dispatcher's error, for this caller
        if result is not None:
            return result
        if isinstance(w.failed, Mk1Error):
            raise w.failed
        if w.failed is not None:
            raise ServiceUnavailable(f"could not queue the call in SQS: {w.failed}")
        if w.receipt is not None:
            self.queue.delete_later(w.receipt)
        # Time in the queue: until the slot was granted (a handed call may start before its thread wakes).
        return self.slots.granted_slot(w, ((w.granted_at or self.clock.monotonic()) - w.enqueued) * 1000)

    def cancel_locked(self, w: Waiter) -> bool:
        """True if cancelled; False if a slot was granted first (then the caller must use it)."""
        if w.granted:
            return False
        w.cancelled = True
        self.waiters.pop(w.request_id, None)
        return True

    # -- async calls --
    def enqueue_async(self, body: dict, delay_s: int = 0) -> None:
        with self.cond:
            waiting = self.waiting()
            if waiting >= self.max_depth:
                raise TooManyRequests(self.busy(self.cap(), waiting) + f"; the queue is full ({self.max_depth}).",
                                      REASON, 1)
            self.async_pending += 1
            self.cond.notify_all()
        try:
            self.queue.send({**body, "kind": "async", "owner": self.instance_id}, delay_s)
        except Exception as e:
            with self.cond:
                self.async_pending -= 1
            raise ServiceUnavailable(f"could not queue the call in SQS: {e}") from e

    # -- slots (caller holds the lock) --
    def nobody_waiting_locked(self) -> bool:
        return not self.waiters and self.async_pending == 0 and self.slots.idle_locked()

    def waiting(self) -> int:
        return len(self.waiters) + self.async_pending + self.slots.waiting_extra_locked()

    def take_locked(self) -> None:
        self.in_use += 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)

    def wake_pump_locked(self) -> None:
        """Wake the pump only if it has a receive to make now: woken at every queued call and freed
        slot, it mostly found nothing to do, and each wake put a thread switch and a GIL hand-over on
        the path of the call (in a freed slot's case, between the answer and the next event)."""
        if self.slots.wants_receive_locked(self.clock.monotonic())[0]:
            self.cond.notify_all()

    # -- the pump: SQS -> the slot source, in queue order --
    def _pump_loop(self) -> None:
        while True:
            with self.cond:
                while self.running:
                    want, wait_s = self.slots.wants_receive_locked(self.clock.monotonic())
                    if want:
                        break
                    self.cond.wait(0.5)
                    self.slots.on_tick_locked()  # the cap may have been raised live
                if not self.running:
                    return
                room = self.slots.before_receive_locked(wait_s)
            try:
                messages = self.queue.receive(room, wait_s)
            except Exception as e:
                log.warning("%s: receiving from SQS failed: %s", self.function, e)
                threading.Event().wait(0.5)
                continue
            self.slots.on_messages(messages)

    def stop(self) -> None:
        self._stopped.set()
        with self.cond:
            self.running = False
            self.cond.notify_all()
        self._pump.join(timeout=3)

    # -- visibility --
    def busy(self, cap: int, waiting: int) -> str:
        return f"{self.function} is busy: {self.in_use} of {cap} executions running, {waiting} waiting"

    def describe(self) -> dict:
        with self.cond:
            d = {"reserved_concurrency": self.cap(), "in_use": self.in_use, "waiting": self.waiting(),
                 "peak_in_use": self.peak_in_use}
        return {**d, **self.slots.describe()}
