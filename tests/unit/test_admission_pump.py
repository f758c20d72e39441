"""The admission wakes its pump only when it has a receive to make (Admission.wake_pump_locked, with
the single-dispatcher slot source, admit/local_slots.py)."""
import threading

import pytest

from chalicelib.admit.admission import Admission
from chalicelib.admit.waiting import Waiter
from chalicelib.admit.local_slots import BATCH, PREFETCH, LocalSlots
from chalicelib.clock import FakeClock


class _Queue:
    """Pure logic: no SQS. Receives find nothing; sends and deletes are kept."""

    def __init__(self):
        self.hurry = lambda: True
        self.sent, self.deleted = [], []
        self._idle = threading.Event()

    def send_ordered(self, body, on_fail):
        self.sent.append(body)

    def receive(self, room, wait_s):
        self._idle.wait(0.05)
        return []

    def nudge(self):
        pass

    def delete_later(self, receipt):
        self.deleted.append(receipt)


def _admission(cap: int = 3):
    a = Admission("F", _Queue(), lambda: cap, LocalSlots(), clock=FakeClock())
    wakes = []
    notify = a.cond.notify_all
    a.cond.notify_all = lambda: (wakes.append(1), notify())
    return a, wakes


def _waiting(a: Admission, n: int) -> None:
    for i in range(n):
        a.waiters[f"w{i}"] = Waiter(f"w{i}", 1e9, 0.0)


FULL = 3 + PREFETCH   # what the pump holds at most with a cap of 3


@pytest.mark.parametrize("held, woken", [
    (FULL - BATCH + 2, False),   # the oldest held call takes the slot: room for less than a batch
    (FULL - BATCH + 1, True),    # room for a whole batch, and more calls wait than are held: receive
])
def test_a_freed_slot_wakes_the_pump_only_if_a_whole_batch_fits(held, woken):
    a, wakes = _admission()
    with a.cond:
        a.in_use = 3
        _waiting(a, FULL + 10)
        a.slots.held.extend(({"request_id": f"w{i}", "kind": "sync"}, f"r{i}") for i in range(held))
    a.slots.release(None)
    assert a.in_use == 3 and len(a.slots.held) == held - 1 and bool(wakes) is woken
    a.stop()


def _queue_one(a: Admission) -> None:
    """A call joins the queue (its thread gives up at once: nothing here grants it a slot)."""
    def call():
        try:
            a.acquire("new", max_wait_s=0.0)
        except Exception:
            pass
    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(2)


def test_a_queued_call_wakes_the_pump_only_if_the_held_messages_run_low():
    for held, woken in ((3, False), (1, True)):
        a, wakes = _admission(cap=1)
        with a.cond:
            a.in_use = 1
            a.slots.held.extend(({"request_id": f"x{i}", "kind": "sync"}, f"r{i}") for i in range(held))
            _waiting(a, 2)
        _queue_one(a)
        assert bool(wakes) is woken and a.queue.sent[0]["request_id"] == "new"
        a.stop()
