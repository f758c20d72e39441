"""Cluster mode: one message from the function's shared queue, served by this dispatcher.

Wait for a global slot (a lease), claim the call (so a caller that gave up and a runner never
both answer), then hand the lease to its caller if the caller waits here, or run the call here
(another dispatcher's sync call, whose answer goes back through its reply queue; an Event call).
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from chalicelib.admit.waiting import Waiter
from chalicelib.cluster.waiting import ClusterWaiter, LeaseSlot

if TYPE_CHECKING:
    from chalicelib.cluster.slots import ClusterSlots

LEASE_RETRY_S = 0.02


class MessageServer:
    def __init__(self, slots: "ClusterSlots"):
        self.slots, self.a = slots, slots.a

    def serve(self, body: dict, receipt: str) -> None:
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
        slot = LeaseSlot(self.slots.release, 0.0, lease, rid)
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
            won = kind != "sync" or self.slots.claims.claim(rid, "running")
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
            runner = self.slots.run_sync
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
            self.slots.freed.clear()
            lease = self.slots.leases.try_acquire(a.function, a.cap(), rid)
            if lease is not None:
                return lease
            self.slots.freed.wait(LEASE_RETRY_S)
        return None
