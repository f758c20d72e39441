"""Cluster mode's slot source: the cap held globally, as DynamoDB leases (passed into Admission).

Several dispatchers share one AWS endpoint. A slot is a DynamoDB lease (leases.py),
so at most N calls of a function run across all dispatchers. Every dispatcher's pump
listens on the function's shared SQS queue (competing consumers) and serves the
message it receives as soon as it holds a lease:
- an async call runs there; if that dispatcher dies, the message reappears after the
  visibility timeout and its lease expires after MK1_LEASE_MS, so nothing is lost.
- a sync call's message carries the whole call (payload in S3 when large). Its owner
  (the dispatcher holding the caller's connection) runs it itself when its own pump
  got the message; any other dispatcher runs it and sends the result to the owner's
  reply queue (replies.py). Runner and owner claim the call first (claims.py), so a
  caller that gives up and a runner that starts never both answer.
A call reaching a dispatcher with nothing waiting there takes a free lease at once,
without SQS; the order among queued calls is SQS's (best effort across dispatchers).
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from chalicelib.admit.admission import Slot, Waiter
from chalicelib.cluster.claims import Claims
from chalicelib.cluster.leases import Leases
from chalicelib.errors import ServiceUnavailable

if TYPE_CHECKING:
    from chalicelib.admit.admission import Admission

log = logging.getLogger("mk1.cluster")

LEASE_RETRY_S = 0.02
ANSWER_MARGIN_S = 30.0   # a claimed call's answer may take the function's timeout plus this

SyncRunner = Callable[[dict, str, Slot], None]


@dataclass
class ClusterWaiter(Waiter):
    lease: int | None = None         # the global slot granted to this call
    answer: object | None = None     # the result (or error) of its run on another dispatcher
    elsewhere: bool = False          # another dispatcher claimed the call and runs it
    next_watch: float = 0.0          # when to look at its runner again
    runner_missing: int = 0          # checks that found its runner holding no lease


class LeaseSlot(Slot):
    def __init__(self, give_back, wait_ms: float, lease: int, request_id: str, entered_at: float | None = None):
        super().__init__(give_back, wait_ms, entered_at)
        self.lease, self.request_id = lease, request_id


class ClusterSlots:
    def __init__(self, leases: Leases, claims: Claims, run_sync: SyncRunner, timeout_s: Callable[[], float]):
        self.leases, self.claims, self.run_sync, self.timeout_s = leases, claims, run_sync, timeout_s
        self.a: Admission = None  # type: ignore[assignment]   # set by bind()
        self._freed = threading.Event()                 # a lease of ours came back: try for one now
        self._releases: queue.Queue[LeaseSlot] = queue.Queue()

    def bind(self, admission: "Admission") -> None:
        self.a = admission
        threading.Thread(target=self._release_loop, daemon=True, name="lease-release").start()

    # -- taking a slot --
    def take_now(self, request_id: str, cap: int) -> Slot | None:
        a = self.a
        with a.cond:
            nobody = not a.waiters
        if not nobody:
            return None
        lease = self.leases.try_acquire(a.function, cap, request_id)
        if lease is None:
            return None
        with a.cond:
            a.take_locked()
        return LeaseSlot(self.release, 0.0, lease, request_id, a.clock.time())

    def take_free_locked(self, cap: int) -> Slot | None:
        return None   # the global slots are leases: take_now tried one, outside the lock

    def new_waiter_locked(self, request_id: str, deadline: float, now: float, entered: float) -> Waiter:
        return ClusterWaiter(request_id, deadline, now, entered_at=entered)

    def message(self, request_id: str, work: Callable[[], dict] | None) -> dict:
        if work is None:
            raise ValueError("cluster mode queues the whole call: acquire() needs work")
        return work()

    def waiting_extra_locked(self) -> int:
        return 0

    def idle_locked(self) -> bool:
        return True

    # -- a waiting caller --
    def result_of(self, w: Waiter) -> object | None:
        return w.answer if isinstance(w, ClusterWaiter) else None

    def awake(self, w: Waiter) -> None:
        pass

    def answer(self, request_id: str, result) -> bool:
        """Another dispatcher ran this call: hand its result (or error) to the waiting caller."""
        a = self.a
        with a.cond:
            w = a.waiters.pop(request_id, None)
            if not isinstance(w, ClusterWaiter):
                return False
            w.answer = result
        w.event.set()
        return True

    def cancel(self, w: Waiter) -> bool:
        """The caller gives up (deadline or hang-up) only if no dispatcher has claimed its call."""
        assert isinstance(w, ClusterWaiter)
        a = self.a
        with a.cond:
            if w.granted or w.answer is not None:
                return False
            elsewhere = w.elsewhere
        failed = None
        if elsewhere:
            if a.clock.monotonic() < w.deadline:
                return False   # being run elsewhere: its answer is on the way
            failed = ServiceUnavailable(f"the dispatcher running call {w.request_id} of {a.function} "
                                        f"stopped answering (it may have been stopped).")
        elif not self._claim_to_give_up(w):
            return False
        with a.cond:
            if w.granted or w.answer is not None:
                return False
            w.cancelled, w.failed = True, failed
            a.waiters.pop(w.request_id, None)
            return True

    def _claim_to_give_up(self, w: ClusterWaiter) -> bool:
        """False if a runner claimed the call first: it runs, and its answer will come."""
        try:
            won = self.claims.claim(w.request_id, "given-up")
        except Exception as e:   # the endpoint is down: nobody else can claim it either
            log.warning("claiming %s to give it up failed: %s", w.request_id, e)
            won = True
        if not won:
            with self.a.cond:
                w.elsewhere = True
                w.deadline = self.a.clock.monotonic() + self.timeout_s() + ANSWER_MARGIN_S
        return won

    def watch(self, w: Waiter) -> None:
        """A call waiting longer than a lease period may be running on another dispatcher: if that
        one holds no live lease for it at two checks a lease period apart, it died mid-call and
        no answer will come. The caller learns so now, not after its deadline and the timeout."""
        assert isinstance(w, ClusterWaiter)
        a = self.a
        now, period = a.clock.monotonic(), self.leases.lease_s
        if w.granted or w.answer is not None or now < w.next_watch or now - w.enqueued < period:
            return
        w.next_watch = now + period
        try:
            claim = self.claims.get(w.request_id)
            dead = (claim is not None and claim["by"] != a.instance_id and claim["state"] == "running"
                    and not self.leases.holds(a.function, w.request_id))
        except Exception as e:   # the endpoint is restarting: look again next period
            log.warning("checking on the runner of %s failed: %s", w.request_id, e)
            return
        w.runner_missing = w.runner_missing + 1 if dead else 0
        if w.runner_missing < 2:
            return
        with a.cond:
            if w.granted or w.answer is not None:
                return
            w.cancelled = True
            w.failed = ServiceUnavailable(f"the dispatcher running call {w.request_id} of {a.function} "
                                          f"stopped (its lease expired) before answering.")
            a.waiters.pop(w.request_id, None)
        w.event.set()

    def granted_slot(self, w: Waiter, wait_ms: float) -> Slot:
        assert isinstance(w, ClusterWaiter)
        return LeaseSlot(self.release, wait_ms, w.lease, w.request_id, w.entered_at)  # type: ignore[arg-type]

    def release(self, slot: Slot) -> None:
        # The lease goes back off the caller's path: its answer need not wait for DynamoDB.
        with self.a.cond:
            self.a.in_use -= 1
            self.a.cond.notify_all()
        if isinstance(slot, LeaseSlot):
            self._releases.put(slot)

    def _release_loop(self) -> None:
        while True:
            slot = self._releases.get()
            self.leases.release(self.a.function, slot.lease, slot.request_id)
            self._freed.set()

    # -- the pump: a competing consumer of the shared queue --
    def wants_receive_locked(self, now: float) -> tuple[bool, int]:
        return True, 1   # always listening: any dispatcher may hold calls that this one could run

    def before_receive_locked(self, wait_s: int) -> int:
        return 1   # one message at a time: one held here cannot run on a dispatcher with a slot

    def on_tick_locked(self) -> None:
        pass   # slots are handed out by serve(), which waits for leases outside the lock

    def on_messages(self, messages: list[tuple[dict, str]]) -> None:
        for body, receipt in messages:
            try:
                self._serve(body, receipt)
            except Exception:
                log.exception("%s: serving a queued call failed; SQS delivers it again", self.a.function)
                self.a.queue.give_back(receipt)

    def _serve(self, body: dict, receipt: str) -> None:
        """One message from the shared queue: wait for a lease, claim the call, then run it here
        or (its owner's own message) hand the lease to the caller waiting in this process."""
        a = self.a
        rid, kind = body.get("request_id", ""), body.get("kind")
        mine = body.get("owner") == a.instance_id
        waiter = self._its_waiter(body, receipt, mine) if kind == "sync" else None
        if waiter is False:
            return
        lease = self._lease(rid, waiter)
        if lease is None:
            if waiter is not None and waiter.cancelled:
                a.queue.delete_later(receipt)
            else:
                a.queue.give_back(receipt)   # shutting down: another dispatcher runs it
            return
        slot = LeaseSlot(self.release, 0.0, lease, rid)
        with a.cond:
            a.take_locked()
        if not self._claimed(kind, rid, slot, receipt):
            return
        if waiter is not None:
            self._grant(waiter, slot, receipt)
        else:
            self._run_here(body, receipt, slot, mine)

    def _its_waiter(self, body: dict, receipt: str, mine: bool) -> ClusterWaiter | None | bool:
        """A sync call's waiting caller if it is ours; None if another dispatcher's call may still
        run here; False (message deleted) if nobody waits for it any more."""
        a = self.a
        if mine:
            with a.cond:
                waiter = a.waiters.get(body.get("request_id", ""))
            if waiter is None or waiter.cancelled:
                a.queue.delete_later(receipt)
                return False
            return waiter  # type: ignore[return-value]
        if a.clock.time() > float(body.get("expires", 0)) or "payload" not in body:
            a.queue.delete_later(receipt)   # its caller stopped waiting long ago
            return False
        return None

    def _claimed(self, kind: str | None, rid: str, slot: LeaseSlot, receipt: str) -> bool:
        try:
            won = kind != "sync" or self.claims.claim(rid, "running")
        except Exception:
            slot.release()
            raise
        if not won:
            slot.release()                      # its caller gave up first, or it ran already
            self.a.queue.delete_later(receipt)
        return won

    def _grant(self, waiter: ClusterWaiter, slot: LeaseSlot, receipt: str) -> None:
        a = self.a
        with a.cond:
            if not waiter.cancelled:
                a.waiters.pop(waiter.request_id, None)
                waiter.granted, waiter.receipt, waiter.lease = True, receipt, slot.lease
                waiter.granted_at = a.clock.monotonic()
                waiter.event.set()
                return
        slot.release()
        a.queue.delete_later(receipt)

    def _run_here(self, body: dict, receipt: str, slot: LeaseSlot, mine: bool) -> None:
        a = self.a
        rid, kind = body.get("request_id", ""), body.get("kind")
        if kind == "sync":
            slot.wait_ms = max(0.0, (a.clock.time() - float(body.get("accepted_at", 0))) * 1000)
            runner = self.run_sync
        else:
            if mine:
                with a.cond:
                    a.async_pending = max(0, a.async_pending - 1)
            runner = a.run_async
        if runner is None:
            slot.release()
            a.queue.give_back(receipt)
            return
        threading.Thread(target=runner, args=(body, receipt, slot), daemon=True, name=f"{kind}-{rid}").start()

    def _lease(self, rid: str, waiter: Waiter | None) -> int | None:
        """Wait for a global slot (the pump serves one message at a time, in queue order)."""
        a = self.a
        while a.running:
            if waiter is not None and waiter.cancelled:
                return None
            self._freed.clear()
            lease = self.leases.try_acquire(a.function, a.cap(), rid)
            if lease is not None:
                return lease
            self._freed.wait(LEASE_RETRY_S)
        return None

    def describe(self) -> dict:
        try:
            return {"cluster_running": self.leases.running(self.a.function)}
        except Exception as e:
            return {"cluster_running": f"unknown ({e})"}
