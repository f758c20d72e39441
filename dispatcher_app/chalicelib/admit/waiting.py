"""What admission deals in: a caller waiting for a slot (Waiter), a slot (Slot), and the interface
of where slots come from (SlotSource: admit/local_slots.py in one process, cluster/slots.py across
a cluster)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from chalicelib.admit.admission import Admission


@dataclass
class Waiter:
    """A caller waiting in the queue for a slot."""
    request_id: str
    deadline: float
    enqueued: float
    event: threading.Event = field(default_factory=threading.Event)
    granted: bool = False
    cancelled: bool = False
    receipt: str | None = None
    failed: Exception | None = None  # its queue message could not be sent, or its call failed elsewhere
    # Called (under the lock) as the slot is granted, with the waiter's wake-up: True if it handed
    # the call to a container itself and will wake the waiter once the call went out.
    on_grant: Callable[[Callable[[], None]], bool] | None = None
    granted_at: float | None = None  # monotonic, when a slot was handed to it
    entered_at: float = 0.0          # epoch s, when it joined the queue (the usage record's `accepted`)
    alive: Callable[[], bool] = lambda: True   # is its caller still connected?
    gone: bool = False               # its caller hung up: its thread leaves with ClientGone


class Slot:
    """One of the function's reserved executions; released exactly once. entered_at: when its call
    took a free slot or joined the queue (epoch s; wait_ms counts from there)."""

    def __init__(self, give_back: Callable[["Slot"], None], wait_ms: float, entered_at: float | None = None):
        self._give_back, self.wait_ms = give_back, wait_ms
        self.entered_at = entered_at
        self._once = threading.Lock()

    def release(self) -> None:
        # Thread-safe: the Runtime API thread may release it as the function answers (assign/pool.py).
        if self._once.acquire(blocking=False):
            self._give_back(self)

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


AsyncRunner = Callable[[dict, str, Slot], None]


class SlotSource(Protocol):
    """Where an admission's slots come from. Methods named *_locked run under the admission's lock."""
    def bind(self, admission: "Admission") -> None: ...
    def take_now(self, request_id: str, cap: int) -> Slot | None: ...           # before the lock
    def take_free_locked(self, cap: int, queue_ahead: bool = True) -> Slot | None: ...
    def new_waiter_locked(self, request_id: str, deadline: float, now: float, entered: float) -> Waiter: ...
    def message(self, request_id: str, work: Callable[[], dict] | None) -> dict: ...
    def waiting_extra_locked(self) -> int: ...
    def idle_locked(self) -> bool: ...
    watch_every_s: float | None     # how often a waiting call is watched (None: never)
    def watch(self, w: Waiter) -> None: ...
    def cancel(self, w: Waiter) -> bool: ...
    def awake(self, w: Waiter) -> None: ...
    def result_of(self, w: Waiter) -> object | None: ...
    def granted_slot(self, w: Waiter, wait_ms: float) -> Slot: ...
    def release(self, slot: Slot) -> None: ...
    def wants_receive_locked(self, now: float) -> tuple[bool, int]: ...
    def before_receive_locked(self, wait_s: int) -> int: ...
    def on_messages(self, messages: list[tuple[dict, str]]) -> None: ...
    def on_tick_locked(self) -> None: ...
    def describe(self) -> dict: ...
