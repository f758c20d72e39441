"""Cluster mode admission: the same contract as admit.Admission, with the cap held globally.

Several dispatchers share one AWS endpoint. A slot is a DynamoDB lease (leases.py),
so at most N calls of a function run across all dispatchers. Every dispatcher's pump
listens on the function's shared SQS queue (competing consumers) and serves the
message it receives as soon as it holds a lease:
- an async call runs there; if that dispatcher dies, the message reappears after the
  visibility timeout and its lease expires after MK1_LEASE_MS, so nothing is lost.
- a sync call's message carries the whole call (payload in S3 when large). Its owner
  (the dispatcher holding the caller's connection) runs it itself when its own pump
  got the message; any other dispatcher runs it and sends the answer to the owner's
  reply queue (replies.py). Runner and owner claim the call first (claims.py), so a
  caller that gives up and a runner that starts never both answer.
A call reaching a dispatcher with nothing waiting there takes a free lease at once,
without SQS; the order among queued calls is SQS's (best effort across dispatchers).
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from chalicelib.admit.admission import REASON, Admission, Slot, Waiter
from chalicelib.cluster.claims import Claims
from chalicelib.errors import ServiceUnavailable, TooManyRequests
from chalicelib.cluster.leases import Leases

log = logging.getLogger("mk1.cluster")

LEASE_RETRY_S = 0.02
ANSWER_MARGIN_S = 30.0   # a claimed call's answer may take the function's timeout plus this

SyncRunner = Callable[[dict, str, Slot], None]


class LeaseSlot(Slot):
    def __init__(self, admission: "ClusterAdmission", wait_ms: float, lease: int, request_id: str,
                 entered_at: float | None = None):
        super().__init__(admission, wait_ms, entered_at)
        self.lease, self.request_id = lease, request_id


class ClusterAdmission(Admission):
    def __init__(self, *args, leases: Leases, claims: Claims, run_sync: SyncRunner,
                 timeout_s: Callable[[], float], **kw):
        self.leases, self.claims, self.run_sync, self.timeout_s = leases, claims, run_sync, timeout_s
        self._freed = threading.Event()                 # a lease of ours came back: try for one now
        self._releases: queue.Queue[LeaseSlot] = queue.Queue()
        threading.Thread(target=self._release_loop, daemon=True, name="lease-release").start()
        super().__init__(*args, **kw)

    # -- sync calls --
    def acquire(self, request_id: str, alive=lambda: True, max_wait_s: float | None = None,
                work: Callable[[], dict] | None = None, on_grant=None) -> Slot:
        # on_grant (the direct hand-off) is not used here: a lease grant wakes the caller's thread.
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
                return LeaseSlot(self, 0.0, lease, request_id, self.clock.time())
        if work is None:
            raise ValueError("cluster mode queues the whole call: acquire() needs work")
        body = work()   # before the lock: it may put a large payload in S3
        wait_s = self.max_wait_s if max_wait_s is None else max_wait_s
        with self._cond:
            waiting = self._waiting()
            if waiting >= self.max_depth:
                raise TooManyRequests(self._busy(cap, waiting) + f"; the queue is full ({self.max_depth}).",
                                      REASON, 1)
            now, entered = self.clock.monotonic(), self.clock.time()   # together: see Admission.acquire
            w = Waiter(request_id, now + wait_s, now, entered_at=entered)
            self._waiters[request_id] = w
            self.queue.send_ordered({**body, "request_id": request_id, "kind": "sync", "function": self.function,
                                     "owner": self.instance_id, "expires": self.clock.time() + wait_s + 5},
                                    on_fail=lambda err, w=w: self._send_failed(w, err))
        return self._wait(w, cap, alive)

    def answer(self, request_id: str, response) -> bool:
        """Another dispatcher ran this call: hand its answer to the waiting caller."""
        with self._cond:
            w = self._waiters.pop(request_id, None)
            if w is None:
                return False
            w.answer = response
        w.event.set()
        return True

    def _cancel(self, w: Waiter) -> bool:
        """The caller gives up (deadline or hang-up) only if no dispatcher has claimed its call."""
        with self._cond:
            if w.granted or w.answer is not None:
                return False
            elsewhere = w.elsewhere
        failed = None
        if elsewhere:
            if self.clock.monotonic() < w.deadline:
                return False   # being run elsewhere: its answer is on the way
            failed = ServiceUnavailable(f"the dispatcher running call {w.request_id} of {self.function} "
                                        f"stopped answering (it may have been stopped).")
        else:
            try:
                won = self.claims.claim(w.request_id, "given-up")
            except Exception as e:   # the endpoint is down: nobody else can claim it either
                log.warning("claiming %s to give it up failed: %s", w.request_id, e)
                won = True
            if not won:
                with self._cond:
                    w.elsewhere = True
                    w.deadline = self.clock.monotonic() + self.timeout_s() + ANSWER_MARGIN_S
                return False
        with self._cond:
            if w.granted or w.answer is not None:
                return False
            w.cancelled, w.failed = True, failed
            self._waiters.pop(w.request_id, None)
            return True

    def _watch(self, w: Waiter) -> None:
        """A call waiting longer than a lease period may be running on another dispatcher: if that
        one holds no live lease for it at two checks a lease period apart, it died mid-call and
        no answer will come. The caller learns so now, not after its deadline and the timeout."""
        now, period = self.clock.monotonic(), self.leases.lease_s
        if w.granted or w.answer is not None or now < w.next_watch or now - w.enqueued < period:
            return
        w.next_watch = now + period
        try:
            claim = self.claims.get(w.request_id)
            dead = (claim is not None and claim["by"] != self.instance_id and claim["state"] == "running"
                    and not self.leases.holds(self.function, w.request_id))
        except Exception as e:   # the endpoint is restarting: look again next period
            log.warning("checking on the runner of %s failed: %s", w.request_id, e)
            return
        w.runner_missing = w.runner_missing + 1 if dead else 0
        if w.runner_missing < 2:
            return
        with self._cond:
            if w.granted or w.answer is not None:
                return
            w.cancelled = True
            w.failed = ServiceUnavailable(f"the dispatcher running call {w.request_id} of {self.function} "
                                          f"stopped (its lease expired) before answering.")
            self._waiters.pop(w.request_id, None)
        w.event.set()

    def _granted_slot(self, w: Waiter, wait_ms: float) -> Slot:
        return LeaseSlot(self, wait_ms, w.lease, w.request_id, w.entered_at)  # type: ignore[arg-type]

    def _release(self, slot: Slot | None = None) -> None:
        # The lease goes back off the caller's path: its answer need not wait for DynamoDB.
        with self._cond:
            self.in_use -= 1
            self._cond.notify_all()
        if isinstance(slot, LeaseSlot):
            self._releases.put(slot)

    def _release_loop(self) -> None:
        while True:
            slot = self._releases.get()
            self.leases.release(self.function, slot.lease, slot.request_id)
            self._freed.set()

    def _dispatch(self) -> None:
        pass   # slots are handed out by the pump below, which waits for leases outside the lock

    # -- the pump (admit.Admission's loop): a competing consumer of the shared queue --
    def _want(self, now: float) -> tuple[bool, int]:
        return True, 1   # always listening: any dispatcher may hold calls that this one could run

    def _receive_room(self) -> int:
        return 1   # take one message at a time: one held here cannot run on a dispatcher with a slot

    def _on_messages(self, messages: list[tuple[dict, str]]) -> None:
        for body, receipt in messages:
            try:
                self._serve(body, receipt)
            except Exception:
                log.exception("%s: serving a queued call failed; SQS delivers it again", self.function)
                self.queue.give_back(receipt)

    def _serve(self, body: dict, receipt: str) -> None:
        rid, kind = body.get("request_id", ""), body.get("kind")
        mine = body.get("owner") == self.instance_id
        waiter = None
        if kind == "sync":
            if mine:
                with self._cond:
                    waiter = self._waiters.get(rid)
                if waiter is None or waiter.cancelled:
                    self.queue.delete_later(receipt)
                    return
            elif self.clock.time() > float(body.get("expires", 0)) or "payload" not in body:
                self.queue.delete_later(receipt)   # its caller stopped waiting long ago
                return
        lease = self._lease(rid, waiter)
        if lease is None:
            if waiter is not None and waiter.cancelled:
                self.queue.delete_later(receipt)
            else:
                self.queue.give_back(receipt)   # shutting down: another dispatcher runs it
            return
        slot = LeaseSlot(self, 0.0, lease, rid)
        with self._cond:
            self._take()
        try:
            won = kind != "sync" or self.claims.claim(rid, "running")
        except Exception:
            slot.release()
            raise
        if not won:
            slot.release()                      # its caller gave up first, or it ran already
            self.queue.delete_later(receipt)
            return
        if kind == "sync" and mine:
            with self._cond:
                if not waiter.cancelled:
                    self._waiters.pop(rid, None)
                    waiter.granted, waiter.receipt, waiter.lease = True, receipt, lease
                    waiter.granted_at = self.clock.monotonic()
                    waiter.event.set()
                    return
            slot.release()
            self.queue.delete_later(receipt)
            return
        if kind == "sync":
            slot.wait_ms = max(0.0, (self.clock.time() - float(body.get("accepted_at", 0))) * 1000)
            runner = self.run_sync
        else:
            if mine:
                with self._cond:
                    self._async_pending = max(0, self._async_pending - 1)
            runner = self.run_async
        if runner is None:
            slot.release()
            self.queue.give_back(receipt)
            return
        threading.Thread(target=runner, args=(body, receipt, slot), daemon=True, name=f"{kind}-{rid}").start()

    def _lease(self, rid: str, waiter: Waiter | None) -> int | None:
        """Wait for a global slot (the pump serves one message at a time, in queue order)."""
        while self._running:
            if waiter is not None and waiter.cancelled:
                return None
            self._freed.clear()
            lease = self.leases.try_acquire(self.function, self.cap(), rid)
            if lease is not None:
                return lease
            self._freed.wait(LEASE_RETRY_S)
        return None

    def describe(self) -> dict:
        d = super().describe()
        try:
            d["cluster_running"] = self.leases.running(self.function)
        except Exception as e:
            d["cluster_running"] = f"unknown ({e})"
        return d
