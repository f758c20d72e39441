"""Figure 8: a SnapStart cold start (a restore) against a bare interpreter start and a normal cold start.

A python3.12 function whose init sleeps `load` seconds (0.1 s and 5 s), SnapStart on, published;
MK1_KEEPALIVE_MS=0, so every call is a new environment. Measured per call: from just before the
client sends the call to the handler's first line (its wall clock, returned in the answer), and the
whole call. Beside it, in the same run: `python3.12 -c pass` (a bare interpreter start: the floor any
start of a new process pays) and the same function's $LATEST (no SnapStart: interpreter + init).
The goal (issue #26): median arrival-to-handler <= 10 ms, at most half the bare interpreter start,
the same for 0.1 s and 5 s of load().
"""
from __future__ import annotations

import json
import subprocess
import time

from . import harness as h
from .stats import ratio, summary

CODE = '''
import os, time
time.sleep(float(os.environ["LOAD_S"]))
def handler(event, context):
    return {"entered": time.time()}
'''


def _deploy(s, name: str, load_s: float) -> str:
    h.deploy_code(s, name, CODE, "python3.12", Timeout=60, SnapStart={"ApplyOn": "PublishedVersions"},
                  Environment={"Variables": {"LOAD_S": str(load_s)}})
    return s.aws("lambda").publish_version(FunctionName=name)["Version"]


def _calls(client, target: str, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        time.sleep(0.15)   # keepalive 0: the previous environment is gone
        sent = time.time()
        ms, payload, headers = h.boto3_invoke(client, target)
        ran = h.run_of(headers)
        rows.append({"to_handler_ms": (payload["entered"] - sent) * 1000, "call_ms": ms, "cold": ran.get("cold"),
                     "restore_ms": h.number(ran, "restore-ms"), "init_ms": h.number(ran, "init-ms")})
    return rows


def _bare(python: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def snapstart(s, calls: int, loads=(0.1, 5.0), log=print) -> dict:
    from chalicelib.execute.runtimes import find_python
    python = find_python("3.12")
    if python is None:
        return {"not_measured": "no python3.12 on this machine (pyenv install 3.12)"}
    client = h.boto3_lambda(s)
    out: dict = {"calls": calls, "python": python, "loads": {}}
    for load_s in loads:
        name = f"bench-snap-{int(load_s * 1000)}"
        version = _deploy(s, name, load_s)
        t0 = time.perf_counter()
        h.boto3_invoke(client, f"{name}:{version}")   # waits for the snapshot (init at publish) if not ready
        log(f"  load {load_s} s: first call after publish {time.perf_counter() - t0:.2f} s")
        restored = _calls(client, f"{name}:{version}", calls)
        plain = _calls(client, name, max(2, calls // 4))   # $LATEST: no SnapStart
        bare = _bare(python, calls)
        row = {"restore_to_handler_ms": summary(r["to_handler_ms"] for r in restored),
               "restore_call_ms": summary(r["call_ms"] for r in restored),
               "restore_duration_ms": summary(r["restore_ms"] for r in restored if r["restore_ms"] is not None),
               "cold_calls": sum(r["cold"] == "true" for r in restored),
               "plain_to_handler_ms": summary(r["to_handler_ms"] for r in plain),
               "plain_to_handler_minus_load_ms": summary(r["to_handler_ms"] - load_s * 1000 for r in plain),
               "bare_interpreter_ms": summary(bare)}
        med = row["restore_to_handler_ms"]["median"]
        row["ratios"] = {"restore/bare": ratio(med, row["bare_interpreter_ms"]["median"]),
                         "restore/plain": ratio(med, row["plain_to_handler_ms"]["median"])}
        out["loads"][str(load_s)] = row
        log(f"  load {load_s} s: restore to handler {med:.1f} ms (bare python3.12 "
            f"{row['bare_interpreter_ms']['median']:.1f} ms; without SnapStart "
            f"{row['plain_to_handler_ms']['median']:.1f} ms)")
    meds = [r["restore_to_handler_ms"]["median"] for r in out["loads"].values()]
    bares = [r["bare_interpreter_ms"]["median"] for r in out["loads"].values()]
    worst = max(meds)
    out["goal"] = {"target": "SnapStart cold start: median arrival-to-handler <= 10 ms and <= half a bare "
                             "interpreter start, whatever load() takes",
                   "value_ms": round(worst, 2), "limit_ms": 10.0,
                   "met": worst <= 10.0 and all(m <= b / 2 for m, b in zip(meds, bares)),
                   "spread_ms": round(max(meds) - min(meds), 2)}
    json.dumps(out)
    return out
