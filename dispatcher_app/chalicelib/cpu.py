"""The dispatcher's threads on one CPU (MK1_DISPATCHER_CPU), its functions on all of them.

Why: the dispatcher is one Python process of many threads (one per connection, the Runtime API
endpoints', the pump, the writers) that take turns at one GIL. A thread that gives the GIL to a
thread sleeping on another CPU has to wake that CPU (an inter-processor interrupt; in a virtual
machine, a trip through the host), and the GIL sits idle until it runs. During figure 4's burst of
1,000 calls the dispatcher held the GIL about a third of the time while the machine had CPU to spare,
and taking calls in faster only slowed the drain, and the other way round. With every thread on one
CPU a hand-off is a switch on that CPU, so the process does the same work with less waiting
(docs/BENCHMARKS.md, figure 4). It could not use a second CPU for Python anyway: the GIL runs one
thread at a time.

The functions do not inherit this: a container's process is started from a thread given every CPU
mk1 may use for the while (`on_every_cpu`), or a SnapStart snapshot process sets them itself before
its runtime starts (`every_cpu`), so function code runs wherever the kernel puts it.

`auto` pins only a lone dispatcher on a machine with two CPUs or more. Cluster mode runs several
dispatchers, often on one machine, and one CPU picked alike by each would be shared by all of them.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

SETTING = "MK1_DISPATCHER_CPU"

_everywhere: frozenset[int] | None = None   # the CPUs mk1 may use, once the dispatcher is pinned


def choose(setting: str, allowed: set[int] | frozenset[int], cluster: bool) -> int | None:
    """The CPU to pin the dispatcher to, or None to leave it on every allowed CPU."""
    value = setting.strip().lower()
    if value == "all":
        return None
    if value == "auto":
        # The last CPU rather than the first: CPU 0 is where the boot CPU's interrupts tend to go.
        return None if cluster or len(allowed) < 2 else max(allowed)
    try:
        cpu = int(value)
    except ValueError:
        raise ValueError(f"{SETTING}={setting!r}: expected auto, all, or the number of a CPU") from None
    if cpu not in allowed:
        raise ValueError(f"{SETTING}={cpu}: this process may use only CPUs {_ranges(allowed)}")
    return cpu


def pin_dispatcher(setting: str, cluster: bool) -> int | None:
    """Pin every thread of this process to the chosen CPU (threads started later inherit it).
    Returns that CPU, or None where nothing was pinned (also where the OS cannot: not Linux)."""
    global _everywhere
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = frozenset(os.sched_getaffinity(0))
    cpu = choose(setting, allowed, cluster)
    if cpu is None:
        return None
    _everywhere = allowed
    for tid in _threads():
        try:
            os.sched_setaffinity(tid, {cpu})
        except ProcessLookupError:   # a thread that ended meanwhile
            pass
    return cpu


def every_cpu() -> None:
    """In a container's new process, before its runtime starts: every CPU mk1 may use."""
    if _everywhere is not None:
        os.sched_setaffinity(0, _everywhere)


@contextlib.contextmanager
def on_every_cpu() -> Iterator[None]:
    """This thread on every CPU mk1 may use, while it starts a container's process: a new process
    inherits the CPUs of the thread that starts it (Linux's affinity is a thread's), so it needs
    no code of its own run between fork and exec for them."""
    if _everywhere is None:
        yield
        return
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, _everywhere)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def describe(cpu: int | None) -> str:
    allowed = _everywhere or (frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)
    where = f"CPUs {_ranges(allowed)}" if allowed else "every CPU"
    return f"on {where}" if cpu is None else f"on CPU {cpu} (its functions on {where})"


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]   # this thread: the ones started later inherit its CPU


def _ranges(cpus) -> str:
    out, run = [], []
    for c in sorted(cpus):
        if run and c != run[-1] + 1:
            out.append(run)
            run = []
        run.append(c)
    if run:
        out.append(run)
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in out)
