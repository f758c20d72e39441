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
from typing import TYPE_CHECKING, Callable

from chalicelib.admit.waiting import Slot, Waiter
from chalicelib.cluster.claims import Claims
from chalicelib.cluster.leases import Leases
from chalicelib.cluster.serve import MessageServer
from chalicelib.cluster.waiting import ClusterWaiter, LeaseSlot
from chalicelib.errors import ServiceUnavailable

if TYPE_CHECKING:
    from chalicelib.admit.admission import Admission

log = logging.getLogger("mk1.cluster")

ANSWER_MARGIN_S = 30.0   # a claimed call's answer may take the function's timeout plus this

SyncRunner = Callable[[dict, str, Slot], None]


class ClusterSlots:
    def __init__(self, leases: Leases, claims: Claims, run_sync: SyncRunner, timeout_s: Callable[[], float]):
        self.leases, self.claims, self.run_sync, self.timeout_s = leases, claims, run_sync, timeout_s
        self.a: Admission = None  # type: ignore[assignment]   # set by bind()
        self.freed = threading.Event()                 # a lease of ours came back: try for one now
        self._releases: queue.Queue[LeaseSlot] = queue.Queue()

    def bind(self, admission: "Admission") -> None:
        self.a = admission
        self.server = MessageServer(self)
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

    def take_free_locked(self, cap: int, queue_ahead: bool = True) -> Slot | None:
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

    @property
    def watch_every_s(self) -> float:
        return self.leases.lease_s / 4   # watch() itself acts once a lease period

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
            self.freed.set()

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
                self.server.serve(body, receipt)
            except Exception:
                log.exception("%s: serving a queued call failed; SQS delivers it again", self.a.function)
                self.a.queue.give_back(receipt)

    def describe(self) -> dict:
        try:
            return {"cluster_running": self.leases.running(self.a.function)}
        except Exception as e:
            return {"cluster_running": f"unknown ({e})"}
