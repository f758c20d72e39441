"""The runtime-loop floor: what a slot costs with the real Lambda runtime and no dispatcher at all.

mk1 runs every call the way Lambda does: awslambdaric in the container asks `GET /next`, runs
the handler, `POST`s the answer, reads the 202 and asks again. Each turn of that loop costs a
slot time between two calls (awslambdaric's own work in the container, two HTTP exchanges and
the thread wake-ups on both sides) that no dispatcher can take out without leaving the Lambda
protocol. The floor server of figures 1 and 2 runs the handler in-process and pays none of it.

This floor runs `processes` awslambdaric processes of RuntimeBeta (the function of figure 2),
each against mk1's own Runtime API endpoint (runtime_api.py) whose host has the next event
ready (during a run) or parks the runtime's /next and sends the event on it (between runs, as mk1's
containers do): no front door, no authentication, no admission, no queue, no records. Its calls/s
over ideal is what a slot running awslambdaric reaches behind a dispatcher that costs nothing;
its event -> answer time (no-op handler) is the runtime hop of figure 1 with nothing else around.

It runs in a process of its own, as mk1's dispatcher does:
    python -m bench.runtime_floor --generate 0.05 --processes 3
then reads commands on stdin ("run N": N calls shared by the processes, "one": a single call)
and answers each with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "dispatcher_app"))

from chalicelib.execute.runtime_api import SENT, NextInvocation, RuntimeEndpoint  # noqa: E402

from .child import stop_on_eof  # noqa: E402

EVENT = json.dumps({"prompt": "hello benchmark world"}).encode()
ARN = "arn:aws:lambda:us-east-1:000000000000:function:RuntimeBeta"


class Loop:
    """The events of one run, shared by every process's endpoint: whichever asks takes the next.
    A /next that finds no work is parked, as mk1's containers park it, and answered by run()."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._budget = 0
        self._seq = 0
        self._out: dict[str, float] = {}
        self._answered: list[tuple[float, float, bytes]] = []   # (out, answered, body)
        self._first_out: float | None = None
        self._parked: list = []
        self.errors: list[bytes] = []
        self.init_errors: list[bytes] = []
        self.stopping = False

    def next_event(self, send) -> NextInvocation | object | None:
        with self._cond:
            if self.stopping:
                return None
            if self._budget == 0:
                self._parked.append(send)
                self._cond.notify_all()
                return SENT
            return self._take()

    def _take(self) -> NextInvocation:
        """Caller holds the lock and the budget is not spent."""
        self._budget -= 1
        self._seq += 1
        rid = f"floor-{self._seq}"
        now = time.perf_counter()
        self._first_out = self._first_out or now
        self._out[rid] = now
        return NextInvocation(rid, EVENT, int(time.time() * 1000) + 60_000, ARN, f"Root=1-{rid}")

    def answered(self, rid: str, body: bytes, error: bool = False) -> None:
        now = time.perf_counter()
        with self._cond:
            out = self._out.pop(rid, None)
            if out is None:
                return
            if error:
                self.errors.append(body[:300])
            self._answered.append((out, now, body))
            self._cond.notify_all()

    def init_failed(self, body: bytes) -> None:
        with self._cond:
            self.init_errors.append(body)
            self._cond.notify_all()   # wait_parked() gives up

    def wait_parked(self, n: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._parked) >= n or self.init_errors, timeout_s)

    def run(self, n: int, timeout_s: float = 600) -> dict:
        """N calls, as fast as the processes take them; wall time from the first event out to the last answer."""
        with self._cond:
            self._answered, self._first_out, self.errors = [], None, []
            self._budget = n
            sends = []
            while self._parked and self._budget:
                sends.append((self._parked.pop(0), self._take()))
        for send, inv in sends:
            send(inv)
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._answered) >= n, timeout_s)
            rows = list(self._answered)
            first = self._first_out
        if not ok:
            raise RuntimeError(f"runtime-loop floor: {len(rows)} of {n} answered in {timeout_s} s")
        wall = max(r[1] for r in rows) - first
        gen = []
        for _, _, body in rows:
            try:
                gen.append(float(json.loads(body).get("generate_ms") or 0.0))
            except (ValueError, AttributeError):
                gen.append(0.0)
        return {"calls": n, "wall_s": wall, "calls_per_s": n / wall if wall > 0 else None,
                "event_to_answer_ms": [(b - a) * 1000 for a, b, _ in rows], "generate_ms": gen,
                "errors": len(self.errors), "error_samples": [e.decode("utf-8", "replace") for e in self.errors[:3]]}

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            parked, self._parked = self._parked, []
        for send in parked:
            try:
                send(None)
            except OSError:
                pass


class _Host:
    """runtime_api.RuntimeHost for one process: every answer is accepted and counted."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def next_invocation(self, send=None) -> NextInvocation | object | None:
        return self.loop.next_event(send)

    def arrived(self, request_id: str) -> bool:
        return True

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        self.loop.answered(request_id, body)
        return True

    def invocation_error(self, request_id: str, body: bytes, error_type: str) -> bool:
        self.loop.answered(request_id, body, error=True)
        return True

    def init_error(self, body: bytes, error_type: str) -> None:
        self.loop.init_failed(body)

    def flush_answers(self) -> None:
        pass


def start_processes(loop: Loop, n: int, generate_s: float) -> tuple[list[RuntimeEndpoint], list[subprocess.Popen]]:
    """`n` awslambdaric processes of RuntimeBeta, as mk1's process backend starts them (same
    interpreter, `python -u -m awslambdaric handler.handler`), each with its own endpoint."""
    endpoints, procs = [], []
    code = ROOT / "functions"
    for _ in range(n):
        ep = RuntimeEndpoint(_Host(loop)).start()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "PYTHONPATH": f"{code / 'beta'}:{code / 'common'}", "PYTHONDONTWRITEBYTECODE": "1",
               "AWS_LAMBDA_RUNTIME_API": ep.address, "AWS_LAMBDA_FUNCTION_NAME": "RuntimeBeta",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
               "_HANDLER": "handler.handler", "LOAD_SECONDS": "0", "GENERATE_SECONDS": str(generate_s),
               "TZ": ":UTC"}
        procs.append(subprocess.Popen([sys.executable, "-u", "-m", "awslambdaric", "handler.handler"],
                                      cwd=str(code / "beta"), env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        endpoints.append(ep)
    return endpoints, procs


def serve(generate_s: float, processes: int) -> None:
    loop = Loop()
    endpoints, procs = start_processes(loop, processes, generate_s)
    try:
        if not loop.wait_parked(processes, 60) or loop.init_errors:
            print(json.dumps({"error": "the runtime processes did not start",
                              "init_errors": [e.decode("utf-8", "replace") for e in loop.init_errors]}), flush=True)
            return
        print(json.dumps({"ready": processes}), flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            try:
                out = loop.run(int(cmd[1]) if cmd[0] == "run" else 1)
            except Exception as e:   # reported to the benchmark, which records it as not measured
                out = {"error": str(e)}
            print(json.dumps(out), flush=True)
    finally:
        loop.stop()
        for p in procs:
            p.kill()
            p.wait()
        for ep in endpoints:
            ep.stop()


class RuntimeLoopFloor:
    """The floor's process, from the benchmark's side."""

    def __init__(self, generate_s: float, processes: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.runtime_floor", "--generate", str(generate_s),
                                      "--processes", str(processes)], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = json.loads(self.proc.stdout.readline() or '{"error": "exited"}')
        if "ready" not in first:
            self.stop()
            raise RuntimeError(f"the runtime-loop floor did not start: {first}")

    def _ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline() or '{"error": "exited"}')
        if "error" in out:
            raise RuntimeError(f"runtime-loop floor: {out['error']}")
        return out

    def run(self, n: int) -> dict:
        return self._ask(f"run {n}")

    def invoke(self) -> tuple[float, dict, dict]:
        """One call, as figure 1's variants are called: (event -> answer ms, payload, headers)."""
        out = self._ask("one")
        return out["event_to_answer_ms"][0], {"generate_ms": out["generate_ms"][0]}, {}

    def stop(self) -> None:
        stop_on_eof(self.proc, 20)   # serve() stops its processes on EOF


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generate", type=float, default=0.05)
    ap.add_argument("--processes", type=int, default=3)
    a = ap.parse_args()
    serve(a.generate, a.processes)


if __name__ == "__main__":
    main()
