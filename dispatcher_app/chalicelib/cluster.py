"""Cluster mode admission: the same contract as admit.Admission, with the cap held globally.

Several dispatchers share one AWS endpoint. A slot is a DynamoDB lease (leases.py),
so at most N calls of a function run across all dispatchers. Waiting calls are
calls wait as follows:
- an async call is a message in the function's shared SQS queue, run by whichever
  dispatcher receives it and gets a slot first (competing consumers); if that
  dispatcher dies, the message reappears after the visibility timeout and its lease
  expires after MK1_LEASE_MS, so nothing accepted is lost.
- a sync call waits, in arrival order, on the dispatcher that holds its connection,
  which takes the next free global slot for it: the answer is produced where the
  caller is connected. (It is not put in SQS: a message only its owner may take
  would bounce between dispatchers and, with a redrive policy, end in the DLQ.)
The cap is exact across dispatchers; the order is FIFO within each dispatcher.
"""
from __future__ import annotations

import logging
import threading

from .admit import REASON, SWEEP_EVERY_S, Admission, Slot, Waiter
from .errors import TooManyRequests
from .leases import Leases

log = logging.getLogger("mk1.cluster")

LEASE_RETRY_S = 0.02


class LeaseSlot(Slot):
    def __init__(self, admission: "ClusterAdmission", wait_ms: float, lease: int, request_id: str):
        super().__init__(admission, wait_ms)
        self.lease, self.request_id = lease, request_id


class ClusterAdmission(Admission):
    def __init__(self, *args, leases: Leases, **kw):
        self.leases = leases
        super().__init__(*args, **kw)

    # -- sync calls --
    def acquire(self, request_id: str, alive=lambda: True, max_wait_s: float | None = None) -> Slot:
        cap = self.cap()
        if cap == 0:
            raise TooManyRequests(f"{self.function} has reserved concurrency 0: every call is refused "
                                  f"until it is raised (put-function-concurrency).", REASON, 10)
        with self._cond:
            nobody = not self._waiters
        if nobody:
            lease = self.leases.try_acquire(self.function, cap, request_id)
            if lease is not None:
                with self._cond:
                    self._take()
                return LeaseSlot(self, 0.0, lease, request_id)
        with self._cond:
            waiting = self._waiting()
            if waiting >= self.max_depth:
                raise TooManyRequests(self._busy(cap, waiting) + f"; the queue is full ({self.max_depth}).",
                                      REASON, 1)
            now = self.clock.monotonic()
            w = Waiter(request_id, now + (self.max_wait_s if max_wait_s is None else max_wait_s), now)
            self._waiters[request_id] = w      # dicts keep insertion order: the local FIFO
            self._cond.notify_all()
        return self._wait(w, cap, alive)

    def _granted_slot(self, w: Waiter, wait_ms: float) -> Slot:
        return LeaseSlot(self, wait_ms, w.lease, w.request_id)  # type: ignore[arg-type]

    def _release(self, slot: Slot | None = None) -> None:
        if isinstance(slot, LeaseSlot):
            self.leases.release(self.function, slot.lease, slot.request_id)
        with self._cond:
            self.in_use -= 1
            self._cond.notify_all()

    def _dispatch(self) -> None:
        pass   # slots are handed out by the pump below, which must wait for leases outside the lock

    # -- the pump (admit.Admission's loop): our own sync calls, and anyone's async messages --
    def _receive_room(self) -> int:
        return 10   # nothing is held here: messages are served as they come

    def _on_messages(self, messages: list[tuple[dict, str]]) -> None:
        self._grant_local()
        mine = [m for m in messages if self._sort_out(*m)]
        for body, receipt in mine:
            self._serve(body, receipt)
        if self._waiters or (messages and not mine):
            threading.Event().wait(LEASE_RETRY_S)

    def _grant_local(self) -> None:
        """Give free global slots to this dispatcher's waiting sync calls, oldest first."""
        while True:
            with self._cond:
                head = next((w for w in self._waiters.values() if not w.cancelled), None)
            if head is None:
                return
            lease = self.leases.try_acquire(self.function, self.cap(), head.request_id)
            if lease is None:
                return
            with self._cond:
                self._take()
                if head.cancelled:
                    granted = False
                else:
                    self._waiters.pop(head.request_id, None)
                    head.granted, head.lease = True, lease
                    head.event.set()
                    granted = True
            if not granted:
                self._release(LeaseSlot(self, 0.0, lease, head.request_id))

    def _want(self, now: float) -> tuple[bool, int]:
        if self._waiters:
            return True, 0      # poll leases (and pick up any async work) without blocking on SQS
        if self._async_pending > 0:
            return True, 1
        if now - self._last_sweep >= SWEEP_EVERY_S:
            return True, 0
        return False, 0

    def _sort_out(self, body: dict, receipt: str) -> bool:
        """True if this dispatcher serves the message; others' sync calls go straight back."""
        if body.get("kind") == "sync" and body.get("owner") != self.instance_id:
            if self.clock.time() > float(body.get("expires", 0)):
                self.queue.delete_later(receipt)   # its caller stopped waiting long ago
            else:
                self.queue.give_back(receipt)
            return False
        return True

    def _serve(self, body: dict, receipt: str) -> None:
        rid = body.get("request_id", "")
        waiter = None
        if body.get("kind") == "sync":
            with self._cond:
                waiter = self._waiters.get(rid)
            if waiter is None or waiter.cancelled:
                self.queue.delete_later(receipt)
                return
        lease = None
        while self._running and lease is None:
            if waiter is not None and waiter.cancelled:
                break
            lease = self.leases.try_acquire(self.function, self.cap(), rid)
            if lease is None:
                threading.Event().wait(LEASE_RETRY_S)
        if lease is None:
            if waiter is not None:
                self.queue.delete_later(receipt)
            else:
                self.queue.give_back(receipt)   # shutting down: another dispatcher runs it
            return
        cancelled = False
        with self._cond:
            self._take()
            if waiter is None:
                if body.get("owner") == self.instance_id:
                    self._async_pending = max(0, self._async_pending - 1)
            elif waiter.cancelled:
                self._waiters.pop(rid, None)
                cancelled = True
            else:
                self._waiters.pop(rid, None)
                waiter.granted, waiter.receipt, waiter.lease = True, receipt, lease
                waiter.event.set()
                return
        if cancelled:
            self._release(LeaseSlot(self, 0.0, lease, rid))
            self.queue.delete_later(receipt)
            return
        slot = LeaseSlot(self, 0.0, lease, rid)
        if self.run_async is None:
            slot.release()
            self.queue.give_back(receipt)
            return
        threading.Thread(target=self.run_async, args=(body, receipt, slot), daemon=True,
                         name=f"async-{rid}").start()

    def describe(self) -> dict:
        d = super().describe()
        try:
            d["cluster_running"] = self.leases.running(self.function)
        except Exception as e:
            d["cluster_running"] = f"unknown ({e})"
        return d
