"""The container lifecycle as a checked state machine.

    STARTING ──first /next──▶ BUSY ◀──reserve── READY
        │                      │  └──release──▶ READY
        ├──init error/timeout──┼──crash/timeout──▶ FAILED ──▶ STOPPED
        └──────────stop────────┴──stop──▶ STOPPING ──exit──▶ STOPPED

Transitions are checked under the container's lock (container.py): the idle reaper can only
stop a READY container, so a container reserved (BUSY) a moment earlier is safe.
"""
from __future__ import annotations

import enum


class State(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


ALLOWED = {
    State.STARTING: {State.BUSY, State.READY, State.FAILED, State.STOPPING},
    State.READY: {State.BUSY, State.STOPPING, State.FAILED},   # FAILED: its runtime died while idle
    State.BUSY: {State.READY, State.STOPPING, State.FAILED},
    State.STOPPING: {State.STOPPED},
    State.FAILED: {State.STOPPED},
    State.STOPPED: set(),
}


class IllegalTransition(RuntimeError):
    pass
