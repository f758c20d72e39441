"""Where the dispatcher's time goes: py-spy (from the bench venv) samples the running dispatcher.

Only the thread holding the GIL is sampled (`--gil`): with one GIL, that is where the dispatcher's
Python CPU goes (threads blocked in I/O or waiting for the GIL are not counted). Aggregated per
function (`--function`). A frame's "ms per call" is its samples / rate / calls made meanwhile:
the GIL-holding time spent in it (inclusive: in it or below it; self: in its own code) per call.
"""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from . import harness as h
from .venv import VENV

PYSPY = VENV / "bin" / "py-spy"


def _frame_key(frame: str) -> str:
    # "handle_invoke (chalicelib/service.py:163)" -> "chalicelib/service.py:handle_invoke"
    name, _, loc = frame.partition(" (")
    path = loc.rstrip(")").rsplit(":", 1)[0]
    return f"{path}:{name}"


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append(([_frame_key(f) for f in stack.split(";") if f], int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]], rate: int, calls: int, top: int = 25) -> dict:
    per_call = 1000.0 / rate / max(calls, 1)
    total = sum(c for _, c in stacks)
    incl, self_ = Counter(), Counter()
    for frames, c in stacks:
        for f in set(frames):
            incl[f] += c
        if frames:
            self_[frames[-1]] += c
    def rows(counter: Counter) -> list[dict]:
        return [{"frame": f, "ms_per_call": round(c * per_call, 3), "share": round(c / total, 3)}
                for f, c in counter.most_common(top)]
    mk1 = Counter({f: c for f, c in incl.items() if "chalicelib/" in f or "dispatcher_app/app.py" in f})
    return {"samples": total, "rate_hz": rate, "calls": calls,
            "active_ms_per_call": round(total * per_call, 3),
            "inclusive": rows(incl), "self": rows(self_), "mk1_inclusive": rows(mk1)}


def profile_dispatcher(system, seconds: float = 8.0, rate: int = 500, out_dir: Path | None = None,
                       log=print) -> dict:
    if not PYSPY.exists():
        return {"error": "py-spy is not installed in the bench venv"}
    out_dir = out_dir or (h.ROOT / ".mk1" / "bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "dispatcher-profile.txt"
    client = h.boto3_lambda(system)
    for _ in range(30):
        h.boto3_invoke(client, "RuntimeAlpha")
    calls, lat = [0], []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            ms, payload, _ = h.boto3_invoke(client, "RuntimeAlpha")
            lat.append(ms - payload.get("generate_ms", 0.0))
            calls[0] += 1
    spy = subprocess.Popen([str(PYSPY), "record", "--pid", str(system.dispatcher.pid), "--duration",
                            str(int(seconds)), "--rate", str(rate), "--format", "raw", "--function",
                            "--nonblocking", "--gil", "--output", str(raw)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)   # py-spy attaches
    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        spy_out, _ = spy.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy_out, _ = spy.communicate()
    stop.set()
    t.join()
    if spy.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed ({spy.returncode}): {spy_out.strip()[-300:]}"}
    result = summarize(parse_raw(raw.read_text()), rate, calls[0])
    lat.sort()
    result["overhead_median_ms_while_profiling"] = round(lat[len(lat) // 2], 3) if lat else None
    result["raw_file"] = str(raw.relative_to(h.ROOT))
    log(f"  profiled {calls[0]} calls: {result['active_ms_per_call']} ms of dispatcher thread time per call")
    return result


class Spy:
    """py-spy recording a process until stop(); summarize per call with the calls made meanwhile."""

    def __init__(self, pid: int, name: str, rate: int = 100, out_dir: Path | None = None):
        self.rate = rate
        out_dir = out_dir or (h.ROOT / ".mk1" / "bench")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.raw = out_dir / f"dispatcher-profile-{name}.txt"
        self.raw.unlink(missing_ok=True)
        self.proc = None
        if PYSPY.exists():
            self.proc = subprocess.Popen([str(PYSPY), "record", "--pid", str(pid), "--rate", str(rate), "--format",
                                          "raw", "--function", "--nonblocking", "--gil", "--output", str(self.raw)],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(0.5)   # attached

    def stop(self, calls: int) -> dict:
        if self.proc is None:
            return {"error": "py-spy is not installed in the bench venv"}
        self.proc.send_signal(signal.SIGINT)   # py-spy writes its output on Ctrl-C
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        if not self.raw.exists():
            return {"error": f"py-spy failed ({self.proc.returncode}): {(out or '').strip()[-300:]}"}
        result = summarize(parse_raw(self.raw.read_text()), self.rate, calls)
        result["raw_file"] = str(self.raw.relative_to(h.ROOT))
        return result
