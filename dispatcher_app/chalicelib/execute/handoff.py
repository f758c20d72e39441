"""The hand-off line: calls granted at the cap wait here, in grant order, for their containers.

At the cap, a slot is granted as a function answers, and the granted call is handed at once to a
warm container reserved for it (assign.py prepare()). The call goes out when a container asks for
work (the runtime's `GET /next`). Two calls granted a few ms apart, each bound to its own
container, would start in the order their containers happen to ask — and on a busy machine a
function process or its Runtime API thread may ask tens of ms late. So the calls are not bound:
each reservation adds a container to `expecting` and its call to the line, and whichever expecting
container asks first takes the oldest call. Calls granted in queue order start in queue order.

Invariant (under the lock): len(expecting) == len(calls). A reserved container that dies before
asking leaves with one call, the youngest, whose caller is woken untaken and places it itself.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from chalicelib.model import Invocation

Wake = Callable[[], None]


class HandOffLine:
    def __init__(self) -> None:
        self._lock = threading.Lock()   # innermost: taken under a container's lock, never the reverse
        self._calls: deque[tuple[Invocation, Wake | None]] = deque()
        self._expecting: set[str] = set()

    def put(self, container_id: str, inv: Invocation, wake: Wake | None) -> bool:
        """Reserve-and-queue: `container_id` (reserved, BUSY) will take the oldest call."""
        with self._lock:
            if container_id in self._expecting:
                return False
            self._expecting.add(container_id)
            self._calls.append((inv, wake))
            return True

    def expects(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._expecting

    def take(self, container_id: str) -> tuple[Invocation, Wake | None] | None:
        """The oldest call, for an expecting container asking for work; None if it expects none."""
        with self._lock:
            if container_id not in self._expecting or not self._calls:
                return None
            self._expecting.discard(container_id)
            return self._calls.popleft()

    def leave(self, container_id: str) -> tuple[Invocation, Wake | None] | None:
        """An expecting container is gone: the youngest call loses its container."""
        with self._lock:
            if container_id not in self._expecting:
                return None
            self._expecting.discard(container_id)
            return self._calls.pop() if self._calls else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)
