"""Slots counted in this process: the single-dispatcher slot source of an admission.

The pump keeps a few queue messages at hand (held, in queue order) and hands each free slot
to the oldest: a waiting caller's slot goes straight to a warm container (the grant's
on_grant, assign/pool.py prepare()), an Event call's starts a thread that runs it.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Callable

from chalicelib.admit.waiting import Slot, Waiter

if TYPE_CHECKING:
    from chalicelib.admit.admission import Admission

log = logging.getLogger("mk1.admit")

SWEEP_EVERY_S = 2.0              # look for work nobody here announced (a restart's leftovers)
BATCH = 10                       # the most one ReceiveMessage returns
# Messages held beyond the cap, ready for the next free slots. A receive at depth takes 5-20 ms on
# the embedded endpoint (p99 ~300 ms) and a send lingers to fill its batch: ten held, refilled only
# once they were down to the cap, ran dry ~4% of the slots' time at 300 calls/s (figure 4). Thirty,
# refilled a batch at a time, cover ~100 ms of that drain.
PREFETCH = 30


class LocalSlots:
    watch_every_s = None   # a waiting call here needs no watching: its slot comes from this process

    def __init__(self) -> None:
        self.a: Admission = None  # type: ignore[assignment]   # set by bind()
        self.held: deque[tuple[dict, str]] = deque()
        # The waiter handed a slot whose thread has not woken yet: the next one is handed its slot
        # only then, so calls start in queue order (threads woken together start in any order).
        self.handoff: Waiter | None = None
        self.last_sweep = 0.0

    def bind(self, admission: "Admission") -> None:
        self.a = admission
        admission.queue.hurry = lambda: self._low_locked()   # see queues.SEND_LINGER_COVERED_S

    # -- taking a slot --
    def take_now(self, request_id: str, cap: int) -> Slot | None:
        return None   # a free slot is taken under the lock (take_free_locked), with the queue in view

    def take_free_locked(self, cap: int, queue_ahead: bool = True) -> Slot | None:
        """A free slot, if nobody waits for one (queue_ahead=False: whoever waits; AWS's mode)."""
        a = self.a
        if a.in_use < cap and (not queue_ahead or a.nobody_waiting_locked()):
            a.take_locked()
            return Slot(self.release, 0.0, a.clock.time())
        return None

    def new_waiter_locked(self, request_id: str, deadline: float, now: float, entered: float) -> Waiter:
        return Waiter(request_id, deadline, now, entered_at=entered)

    def message(self, request_id: str, work: Callable[[], dict] | None) -> dict:
        return {}     # one process: the caller's id is all the message needs

    def waiting_extra_locked(self) -> int:
        """Event calls of other dispatchers (or an earlier run) held here."""
        a = self.a
        return sum(1 for b, _ in self.held if b.get("kind") == "async" and b.get("owner") != a.instance_id)

    def idle_locked(self) -> bool:
        return not self.held

    # -- a waiting caller --
    def watch(self, w: Waiter) -> None:
        pass

    def cancel(self, w: Waiter) -> bool:
        with self.a.cond:
            return self.a.cancel_locked(w)

    def awake(self, w: Waiter) -> None:
        with self.a.cond:
            if self.handoff is w:      # it is awake: the next waiter may be handed a slot
                self.handoff = None
                self._dispatch_locked()

    def result_of(self, w: Waiter) -> None:
        return None

    def granted_slot(self, w: Waiter, wait_ms: float) -> Slot:
        return Slot(self.release, wait_ms, w.entered_at)

    def release(self, slot: Slot) -> None:
        a = self.a
        with a.cond:
            a.in_use -= 1
            self._dispatch_locked()
            a.wake_pump_locked()

    # -- the pump --
    def wants_receive_locked(self, now: float) -> tuple[bool, int]:
        """(receive now?, long-poll seconds): refill the held messages only as they run low, and
        sweep for unannounced work on a timer."""
        a = self.a
        expected = len(a.waiters) + a.async_pending
        room = self._room_locked()
        if room <= 0:
            return False, 0
        if expected > len(self.held):
            # Deep queue: refill a whole batch at a time (one ReceiveMessage per ~10 calls, not per
            # call), as soon as one fits, so the next receive is under way long before the held
            # messages run out; fewer only when fewer are still to come.
            return room >= min(BATCH, expected - len(self.held)), 1
        if a.in_use < a.cap() and now - self.last_sweep >= SWEEP_EVERY_S:
            return True, 0
        return False, 0

    def before_receive_locked(self, wait_s: int) -> int:
        """The pump is about to receive: how many messages it may take."""
        if wait_s == 0:
            self.last_sweep = self.a.clock.monotonic()
        return self._room_locked()

    def _room_locked(self) -> int:
        return self.a.cap() + PREFETCH - len(self.held)

    def _low_locked(self) -> bool:
        """Less than a receive's worth held beyond the slots: a message lingering in the sender
        may soon be the one a free slot needs (read without the lock: a hint)."""
        return len(self.held) < self.a.cap() + BATCH

    def on_messages(self, messages: list[tuple[dict, str]]) -> None:
        if messages:
            with self.a.cond:
                self.held.extend(messages)
                self._dispatch_locked()

    def on_tick_locked(self) -> None:
        self._dispatch_locked()

    def _dispatch_locked(self) -> None:
        """Hand free slots to held messages, in queue order."""
        a = self.a
        while self.held and a.in_use < a.cap():
            if self.handoff is not None and self.held[0][0].get("kind") != "async":
                return
            body, receipt = self.held.popleft()
            if self._low_locked():
                a.queue.nudge()   # a batch of sends lingering because these covered the slots
            if body.get("kind") == "async":
                self._start_async_locked(body, receipt)
                continue
            w = a.waiters.pop(body.get("request_id"), None)
            if w is not None and not w.cancelled and not w.alive():
                # Hung up since the watch last looked: the slot goes to the next call, and this
                # caller's thread leaves with ClientGone (a 'cancelled' record, unbilled).
                w.cancelled = w.gone = True
                w.event.set()
            if w is None or w.cancelled:
                # Its caller gave up, or belonged to a dispatcher that is gone: nothing to run.
                a.queue.delete_later(receipt)
                continue
            self._grant_locked(w, receipt)

    def _start_async_locked(self, body: dict, receipt: str) -> None:
        a = self.a
        if body.get("owner") == a.instance_id:
            a.async_pending = max(0, a.async_pending - 1)
        if a.run_async is None:
            return
        a.take_locked()
        threading.Thread(target=a.run_async, args=(body, receipt, Slot(self.release, 0.0)), daemon=True,
                         name=f"async-{body.get('request_id')}").start()

    def _grant_locked(self, w: Waiter, receipt: str) -> None:
        a = self.a
        a.take_locked()
        w.granted, w.receipt, w.granted_at = True, receipt, a.clock.monotonic()
        handed = False
        if w.on_grant is not None:
            try:
                handed = w.on_grant(w.event.set)
            except Exception:
                log.exception("%s: handing %s to a container failed", a.function, w.request_id)
        if handed:
            return    # it started here, in queue order; its thread is woken once it went out
        self.handoff = w
        w.event.set()

    def describe(self) -> dict:
        return {"held": len(self.held)}
