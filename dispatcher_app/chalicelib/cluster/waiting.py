"""Cluster mode's view of a waiting call and of a slot: a lease, claims, a run elsewhere."""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.admit.waiting import Slot, Waiter


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
