"""Pool policy as pure functions over plain data (no threads, no clocks inside).

Round robin: among idle warm containers (in creation order), the first one after
the container picked last time, wrapping around. With round robin every warm
container keeps getting traffic, so under steady load none idles out: the pool
stays at its peak size until traffic stops for MK1_KEEPALIVE_MS. `warm-first`
(most recently used) concentrates calls on the fewest containers, so the extras
go idle and the reaper stops them sooner.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    id: str
    seq: int            # creation order
    last_used: float    # clock time the container last became idle


def pick_round_robin(idle: list[Candidate], last_picked_seq: int | None) -> Candidate | None:
    if not idle:
        return None
    ordered = sorted(idle, key=lambda c: c.seq)
    if last_picked_seq is None:
        return ordered[0]
    after = [c for c in ordered if c.seq > last_picked_seq]
    return after[0] if after else ordered[0]


def pick_warm_first(idle: list[Candidate]) -> Candidate | None:
    return max(idle, key=lambda c: (c.last_used, c.seq), default=None)


def pick(policy: str, idle: list[Candidate], last_picked_seq: int | None) -> Candidate | None:
    if policy == "warm-first":
        return pick_warm_first(idle)
    return pick_round_robin(idle, last_picked_seq)


def idle_to_stop(idle: list[Candidate], now: float, keepalive_s: float) -> list[Candidate]:
    """Idle containers past the keepalive, oldest idle first."""
    return sorted((c for c in idle if now - c.last_used >= keepalive_s), key=lambda c: c.last_used)
