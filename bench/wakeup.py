"""A machine fact behind every figure: what it costs one process to wake another.

Two processes bounce a byte over a pair of pipes; each round trip is two wake-ups of a blocked
process. Measured on one CPU (a local context switch), across two CPUs each way, and as the
scheduler places them. On this benchmark's Firecracker VM (guest halt-polling off) a wake-up
across vCPUs has to wake a halted vCPU through the hypervisor: 30-300 us instead of ~3 us. A warm
mk1 call crosses about five such hand-offs (client -> front-door thread -> function process ->
Runtime API thread -> caller's thread -> client), a call to the floor server two, so where the
scheduler happens to put mk1's processes and threads moves figure 1 by up to ~1 ms.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from .stats import percentile

ECHO = "import os\nwhile True:\n    b = os.read(0, 1)\n    if not b: break\n    os.write(1, b)\n"


def _round_trips(n: int, parent_cpu: int | None, child_cpu: int | None) -> list[float]:
    before = os.sched_getaffinity(0)
    pin = (lambda: os.sched_setaffinity(0, {child_cpu})) if child_cpu is not None else None
    if parent_cpu is not None:
        os.sched_setaffinity(0, {parent_cpu})
    try:
        child = subprocess.Popen([sys.executable, "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 bufsize=0, preexec_fn=pin)
        w, r = child.stdin.fileno(), child.stdout.fileno()
        out = []
        for i in range(n + 50):
            t0 = time.perf_counter()
            os.write(w, b"x")
            os.read(r, 1)
            if i >= 50:      # the first ones warm the path
                out.append((time.perf_counter() - t0) * 1e6 / 2)
        child.stdin.close()
        child.wait(5)
        return out
    finally:
        os.sched_setaffinity(0, before)


def measure(n: int = 1000) -> dict:
    """Median one-way wake-up (half a round trip), us: on one CPU, across two (each way), and as the
    scheduler places the two processes."""
    cpus = sorted(os.sched_getaffinity(0))
    out = {"what": "one wake-up of a blocked process by another (half a pipe round trip), median us"}
    runs = {"same_cpu": (cpus[0], cpus[0]), "as_scheduled": (None, None)}
    if len(cpus) > 1:
        runs[f"cpu{cpus[0]}_wakes_cpu{cpus[1]}"] = (cpus[0], cpus[1])
        runs[f"cpu{cpus[1]}_wakes_cpu{cpus[0]}"] = (cpus[1], cpus[0])
    for name, (a, b) in runs.items():
        xs = _round_trips(n, a, b)
        out[f"{name}_us"] = round(percentile(xs, 50), 1)
    return out


if __name__ == "__main__":
    print(measure())
