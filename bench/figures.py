"""The five figures. Each returns a JSON-able dict; each is measured beside its references
in the same run, interleaved where the references are cheap, over several repetitions."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
import threading
import time
from datetime import datetime
from typing import Callable

from . import harness as h
from .runtime_floor import RuntimeLoopFloor
from .stats import cores_by_phase, inversions, percentile, ratio, summary

ALPHA, BETA = "RuntimeAlpha", "RuntimeBeta"
CAP = 3


def _overheads(rows: list[dict]) -> list[float]:
    return [r["ms"] - (r.get("generate_ms") or 0.0) for r in rows]


# ---------------------------------------------------------------- figure 1
def _measure_variants(variants: dict[str, Callable[[], tuple]], reps: int, calls: int, log=print,
                      tag: str = "") -> tuple[dict[str, list[dict]], dict[str, list[float]]]:
    """`reps` repetitions, each a batch of `calls` sequential calls per variant, the variants interleaved."""
    for fn in variants.values():   # warm up every path (mk1's first call is a cold start; Ray's router learns)
        for _ in range(min(30, max(5, calls // 4))):
            fn()
    rows: dict[str, list[dict]] = {k: [] for k in variants}
    rep_medians: dict[str, list[float]] = {k: [] for k in variants}
    for rep in range(reps):
        for name, fn in variants.items():
            batch = []
            for _ in range(calls):
                ms, payload, headers = fn()
                ran = h.run_of(headers)
                batch.append({"ms": ms, "generate_ms": payload.get("generate_ms", 0.0),
                              "duration_ms": h.number(ran, "duration-ms"), "wait_ms": h.number(ran, "wait-ms"),
                              "cold": ran.get("cold")})
            rows[name].extend(batch)
            rep_medians[name].append(round(percentile(_overheads(batch), 50), 4))
        log(f"  {tag}rep {rep + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rep_medians.items()))
    return rows, rep_medians


def warm_overhead_peer(floor: h.FloorServer, peer, reps: int, calls: int, log=print) -> dict:
    """Figure 1's peer phase, run while the peer is up and before mk1's: Ray Serve's variants,
    interleaved with the floor's (so the two phases can be compared through the floor)."""
    peer_http = h.PlainHttp(peer.url, h.INVOKE_PATH.format("noop"))
    peer_boto = h.boto3_client(peer.url)
    floor_http = h.PlainHttp(floor.url, h.INVOKE_PATH.format("floor-noop"))
    boto_floor = h.boto3_client(floor.url)
    rows, rep_medians = _measure_variants({
        "peer_http": peer_http.invoke, "peer_boto3": lambda: h.boto3_invoke(peer_boto, "noop"),
        "floor_http_peer_phase": floor_http.invoke,
        "boto3_floor_peer_phase": lambda: h.boto3_invoke(boto_floor, "floor-noop")}, reps, calls, log, "peer phase ")
    for c in (peer_http, floor_http):
        c.close()
    return {"rows": rows, "rep_medians": rep_medians}


def warm_overhead(system, floor: h.FloorServer, peer_phase: dict | None, reps: int, calls: int, log=print) -> dict:
    """End-to-end latency minus the handler's own time (generate_ms), warm, free slot, one client.

    Variants, interleaved per repetition (each a batch of `calls` sequential calls):
      direct        the handler called in this process (the floor of a call)
      floor_http    bare keep-alive HTTP round trip to a TCP_NODELAY stdlib server running the handler
      boto3_floor   boto3's lambda client against that same floor server (boto3's own cost)
      runtime_loop  one awslambdaric process of the no-op function against a bare Runtime API
                    endpoint (runtime_floor.py): event out -> answer in, the runtime hop with no
                    dispatcher around it
      mk1_signed    mk1 through one keep-alive http.client connection, SigV4-signed per call
      mk1_boto3     mk1 through boto3 (THE figure)
    and from `peer_phase` (warm_overhead_peer, measured earlier in the run while the peer was up;
    its idle daemons would otherwise share the 2 cores with mk1's repetitions, as in figure 2):
      peer_http     Ray Serve, bare keep-alive HTTP
      peer_boto3    Ray Serve through the same boto3 client
    """
    akid, secret = system.keys(h.USER)
    direct = h.load_alpha_handler(0.0)
    event = dict(h.PAYLOAD)

    def direct_call():
        t0 = time.perf_counter()
        out = direct(event, None)
        return (time.perf_counter() - t0) * 1000, out, {}

    floor_http = h.PlainHttp(floor.url, h.INVOKE_PATH.format("floor-noop"))
    boto_floor = h.boto3_client(floor.url)
    mk1_signed = h.SignedHttp(system.url, akid, secret)
    mk1_boto = h.boto3_lambda(system)
    loop = RuntimeLoopFloor(generate_s=0.0, processes=1)
    variants: dict[str, Callable[[], tuple]] = {
        "direct": direct_call,
        "floor_http": floor_http.invoke,
        "boto3_floor": lambda: h.boto3_invoke(boto_floor, "floor-noop"),
        "runtime_loop": loop.invoke,
        "mk1_signed": lambda: mk1_signed.invoke(ALPHA),
        "mk1_boto3": lambda: h.boto3_invoke(mk1_boto, ALPHA),
    }
    try:
        rows, rep_medians = _measure_variants(variants, reps, calls, log)
    finally:
        loop.stop()
    peer = peer_phase is not None
    if peer:
        rows.update(peer_phase["rows"])
        rep_medians.update(peer_phase["rep_medians"])
    meter = h.CpuMeter(system)   # one more mk1 batch: CPU per warm call, by process
    for _ in range(calls):
        variants["mk1_boto3"]()
    out: dict = {"reps": reps, "calls_per_rep": calls, "variants": {}, "cpu_ms_per_call": meter.stop(calls)}
    for name in rows:
        out["variants"][name] = {"overhead_ms": summary(_overheads(rows[name])),
                                 "latency_ms": summary(r["ms"] for r in rows[name]),
                                 "rep_medians_ms": rep_medians[name]}
    mk1_rows = rows["mk1_boto3"] + rows["mk1_signed"]
    hop = [r["duration_ms"] - r["generate_ms"] for r in mk1_rows if r["duration_ms"] is not None]
    out["mk1_cold_calls_in_sample"] = sum(1 for r in mk1_rows if r["cold"] == "true")
    v = {k: out["variants"][k]["overhead_ms"]["median"] for k in rows}
    p99 = {k: out["variants"][k]["overhead_ms"]["p99"] for k in rows}
    runtime_hop = percentile(hop, 50)
    out["breakdown_ms"] = {
        "direct_call": v["direct"],
        "loopback_http_floor": v["floor_http"],
        "boto3_client_cost": round(v["boto3_floor"] - v["floor_http"], 4),
        "runtime_api_hop (duration_ms - generate_ms)": round(runtime_hop, 4) if runtime_hop is not None else None,
        "dispatcher_front (mk1_signed - floor_http - runtime hop)":
            round(v["mk1_signed"] - v["floor_http"] - (runtime_hop or 0), 4),
        "boto3_extra_on_mk1 (mk1_boto3 - mk1_signed)": round(v["mk1_boto3"] - v["mk1_signed"], 4),
        "runtime_loop_alone (awslambdaric against a bare endpoint)": v["runtime_loop"],
        "mk1_own (mk1_boto3 - boto3_floor - runtime_loop)":
            round(v["mk1_boto3"] - v["boto3_floor"] - v["runtime_loop"], 4),
    }
    out["ratios"] = {"mk1_boto3/floor_http": ratio(v["mk1_boto3"], v["floor_http"]),
                     "mk1_boto3/boto3_floor": ratio(v["mk1_boto3"], v["boto3_floor"]),
                     "mk1_signed/floor_http": ratio(v["mk1_signed"], v["floor_http"]),
                     "p99 mk1_boto3/boto3_floor": ratio(p99["mk1_boto3"], p99["boto3_floor"])}
    if peer:
        out["ratios"]["mk1_boto3/peer_boto3"] = ratio(v["mk1_boto3"], v["peer_boto3"])
        out["ratios"]["mk1_signed/peer_http"] = ratio(v["mk1_signed"], v["peer_http"])
    out["goal"] = {"target": "mk1 median overhead (boto3) < 3 ms and below the peer's",
                   "value_ms": v["mk1_boto3"], "limit_ms": 3.0, "met_3ms": v["mk1_boto3"] < 3.0,
                   "margin_ms": round(3.0 - v["mk1_boto3"], 3),
                   "peer_ms": v.get("peer_boto3"),
                   "below_peer": (v["mk1_boto3"] < v["peer_boto3"]) if peer else None}
    for c in (floor_http, mk1_signed):
        c.close()
    return out


# ---------------------------------------------------------------- figure 2
def throughput(system, floor: h.FloorServer, peer, reps: int, calls: int, clients: int = 30,
               generate_s: float = 0.05, profile: bool = False, stop_peer=None, log=print) -> dict:
    """Fixed count of calls by `clients` threads through boto3; achieved calls/s over cap/generate."""
    ideal = CAP / generate_s
    pool = clients + 8
    mk1 = h.boto3_lambda(system, pool)
    boto_floor = h.boto3_client(floor.url, pool=pool)
    targets = {"mk1": (lambda: mk1, lambda c: h.boto3_invoke(c, BETA)),
               "floor": (lambda: boto_floor, lambda c: h.boto3_invoke(c, "floor-gen50"))}
    if peer is not None:
        peer_c = h.boto3_client(peer.url, pool=pool)
        targets["peer"] = (lambda: peer_c, lambda c: h.boto3_invoke(c, "gen50"))
    for name, (make, call) in targets.items():   # warm: 3 execution environments each
        h.run_clients(make, call, clients, max(clients * 2, 30))
    # The Lambda runtime loop alone, 3 awslambdaric processes with no dispatcher (runtime_floor.py):
    # what a slot reaches when every turn of its loop is served at once.
    loop = RuntimeLoopFloor(generate_s=generate_s, processes=CAP)
    loop_runs: list[dict] = []
    results: dict[str, list[dict]] = {k: [] for k in targets}
    # The peer's reps first, then it is stopped (stop_peer): Ray's idle processes (GCS, raylet,
    # dashboard) take CPU from mk1 and the floor on this 2-core machine otherwise.
    order = [["peer"]] * reps + [[k for k in targets if k != "peer"]] * reps if peer is not None \
        else [list(targets)] * reps
    try:
        loop.run(30)   # warm
        for i, names in enumerate(order):
            if peer is not None and stop_peer is not None and i == reps:
                stop_peer()    # its reps are done
            rep = i % reps
            for name in names:
                make, call = targets[name]
                meter = h.CpuMeter(system) if name == "mk1" else None
                r = h.run_clients(make, call, clients, calls)
                cpu = meter.stop(r["ok"]) if meter else None
                rate = r["ok"] / r["wall_s"] if r["wall_s"] else 0.0
                results[name].append({"calls_per_s": round(rate, 2), "ok": r["ok"], "errors": len(r["errors"]),
                                      "error_samples": r["errors"][:3], "wall_s": round(r["wall_s"], 3),
                                      "latency_ms": summary(x["ms"] for x in r["rows"]),
                                      "wait_ms": summary(x["wait_ms"] for x in r["rows"] if x["wait_ms"] is not None),
                                      # the slot is held for duration_ms; beyond the handler that is the
                                      # dispatcher <-> runtime hop
                                      "hop_ms": summary(x["duration_ms"] - (x["generate_ms"] or 0) for x in r["rows"]
                                                        if x["duration_ms"] is not None),
                                      **({"cpu_ms_per_call": cpu} if cpu else {})})
            line = ", ".join(f"{k} {results[k][-1]['calls_per_s']:.1f}/s" for k in names)
            if "mk1" in names:
                lr = loop.run(calls)
                loop_runs.append({"calls_per_s": round(lr["calls_per_s"], 2), "wall_s": round(lr["wall_s"], 3),
                                  "errors": lr["errors"], "error_samples": lr["error_samples"],
                                  "hop_ms": summary(e - g for e, g in zip(lr["event_to_answer_ms"], lr["generate_ms"])),
                                  "generate_ms": summary(lr["generate_ms"])})
                line += f", runtime loop alone {lr['calls_per_s']:.1f}/s"
            log(f"  rep {rep + 1}/{reps}: " + line)
    finally:
        loop.stop()
    out: dict = {"reps": reps, "calls_per_rep": calls, "clients": clients, "generate_s": generate_s,
                 "cap": CAP, "ideal_calls_per_s": ideal, "targets": {}}
    for name, rs in results.items():
        rates = [r["calls_per_s"] for r in rs]
        med = percentile(rates, 50)
        out["targets"][name] = {"calls_per_s": summary(rates), "ratio_to_ideal": ratio(med, ideal),
                                "runs": rs}
    loop_rates = [r["calls_per_s"] for r in loop_runs]
    out["targets"]["runtime_loop"] = {"calls_per_s": summary(loop_rates),
                                      "ratio_to_ideal": ratio(percentile(loop_rates, 50), ideal), "runs": loop_runs}
    if profile:   # one more mk1 run, under py-spy: where the dispatcher's time goes at the cap
        from .profile import Spy
        spy = Spy(system.dispatcher.pid, "throughput")
        make, call = targets["mk1"]
        r = h.run_clients(make, call, clients, calls)
        out["profile"] = spy.stop(r["ok"])
        out["profile"]["calls_per_s_while_profiling"] = round(r["ok"] / r["wall_s"], 2) if r["wall_s"] else None
    m = out["targets"]["mk1"]["ratio_to_ideal"]
    out["ratios"] = {"mk1/ideal": m, "floor/ideal": out["targets"]["floor"]["ratio_to_ideal"],
                     "mk1/floor": ratio(percentile([r["calls_per_s"] for r in results["mk1"]], 50),
                                        percentile([r["calls_per_s"] for r in results["floor"]], 50)),
                     "runtime_loop/ideal": out["targets"]["runtime_loop"]["ratio_to_ideal"],
                     "mk1/runtime_loop": ratio(percentile([r["calls_per_s"] for r in results["mk1"]], 50),
                                               percentile(loop_rates, 50))}
    if peer is not None:
        out["ratios"]["peer/ideal"] = out["targets"]["peer"]["ratio_to_ideal"]
    out["goal"] = {"target": "achieved/ideal >= 0.97", "value": m, "met": (m or 0) >= 0.97,
                   "margin": round((m or 0) - 0.97, 3)}
    return out


# ---------------------------------------------------------------- figure 3
def _python_floor(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - t0) * 1000


def cold_start(system, backend: str, calls: int, load_s: float = 0.2, docker_image: str | None = None,
               log=print) -> dict:
    """Call-to-answer of a cold call (MK1_KEEPALIVE_MS=0: every call starts a new environment)
    minus load() (and minus the handler's generate_ms, ~0), beside the floor of starting the
    same kind of environment with nothing in it."""
    client = h.boto3_lambda(system)
    rows, floors, floors_ric = [], [], []
    sleep = f"import time; time.sleep({load_s})"
    docker_client = None
    if backend == "docker":
        import docker
        docker_client = docker.from_env()
    for i in range(calls):
        time.sleep(0.3)  # the previous environment is gone (keepalive 0)
        ms, payload, headers = h.boto3_invoke(client, ALPHA)
        ran = h.run_of(headers)
        rows.append({"ms": ms, "generate_ms": payload.get("generate_ms", 0.0), "cold": ran.get("cold"),
                     "init_ms": h.number(ran, "init-ms"), "duration_ms": h.number(ran, "duration-ms")})
        if backend == "process":
            floors.append(_python_floor(sleep) - load_s * 1000)
            floors_ric.append(_python_floor("import awslambdaric.bootstrap; " + sleep) - load_s * 1000)
        else:
            t0 = time.perf_counter()
            docker_client.containers.run(docker_image, ["-c", sleep], entrypoint="python3", network_mode="none",
                                         remove=True)
            floors.append((time.perf_counter() - t0) * 1000 - load_s * 1000)
    cold = [r for r in rows if r["cold"] == "true"]
    over = [r["ms"] - load_s * 1000 - r["generate_ms"] for r in cold]
    out = {"backend": backend, "calls": calls, "cold_calls": len(cold), "load_s": load_s,
           "overhead_ms": summary(over),
           "init_ms": summary(r["init_ms"] for r in cold if r["init_ms"] is not None),
           "init_minus_load_ms": summary(r["init_ms"] - load_s * 1000 for r in cold if r["init_ms"] is not None),
           "after_init_ms": summary(r["ms"] - r["init_ms"] - r["generate_ms"] for r in cold if r["init_ms"]),
           "floor_ms": summary(floors)}
    if backend == "process":
        out["floor_with_awslambdaric_ms"] = summary(floors_ric)
        out["floor_what"] = "python -c 'time.sleep(load)' wall time minus load (interpreter start)"
    else:
        out["floor_what"] = (f"docker SDK containers.run({docker_image}, python3 -c 'time.sleep(load)', "
                             "--network none, --rm) minus load")
        out["image"] = docker_image
    med = out["overhead_ms"]["median"]
    out["ratios"] = {"overhead/floor": ratio(med, out["floor_ms"]["median"])}
    limit = 100.0 if backend == "process" else 500.0
    out["goal"] = {"target": f"{backend}: cold call-to-answer minus load() < {limit:.0f} ms", "value_ms": med,
                   "limit_ms": limit, "met": med is not None and med < limit,
                   "margin_ms": None if med is None else round(limit - med, 1)}
    return out


# ---------------------------------------------------------------- figure 4
def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _function_state(system, name: str) -> dict:
    """in_use / waiting / held of a function, from the dispatcher's /mk1/status."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"{system.url}/mk1/status", timeout=10) as r:
            f = json.loads(r.read())["functions"][name]
        return {k: f.get(k) for k in ("in_use", "waiting", "held", "peak_in_use", "reserved_concurrency")} | {
            "containers_idle_s": [c.get("idle_s") for c in f.get("containers", [])]}
    except Exception as e:
        return {"error": str(e)}


def _dispatcher_errors(system) -> dict:
    """Exception lines in the dispatcher's log, counted (what went wrong inside, if anything)."""
    try:
        text = system.log()
    except OSError:
        return {}
    return dict(Counter(m.group(0)[:160] for m in re.finditer(r"^\w*(?:Error|Exception)\b: .*$", text, re.M)))


def queue_depth(system, n: int, generate_s: float = 0.01, profile: bool = False, stall_s: float = 60,
                log=print, rate_per_s: float | None = None) -> dict:
    """N calls submitted at once (or at rate_per_s) to one function (cap 3): answered? FIFO?
    overhead? peak RSS?"""
    akid, secret = system.keys(h.USER)
    warm = h.boto3_lambda(system)
    # three warm environments, so the burst measures queueing rather than cold starts
    ts = [threading.Thread(target=lambda: [h.boto3_invoke(warm, BETA) for _ in range(3)]) for _ in range(CAP)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    pid = system.dispatcher.pid
    before = h.proc_status(pid)
    n_records_before = len(system.usage_records(expect=CAP * 3, timeout=10))   # the warm-up's, written
    log(f"  dispatcher before: {before}")
    peak_threads = [before.get("Threads", 0)]
    stop = threading.Event()

    def watch():
        while not stop.wait(0.2):
            peak_threads[0] = max(peak_threads[0], h.proc_status(pid).get("Threads", 0))
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    meter = h.CpuMeter(system)
    cores = h.CoreSampler(system)
    b = h.burst(system.url, akid, secret, BETA, n, stall_s=stall_s, rate_per_s=rate_per_s)
    cpu = meter.stop(n)
    core_samples = cores.stop()
    stop.set()
    state = _function_state(system, BETA)
    watcher.join()
    after = h.proc_status(pid)
    rows = b["rows"]
    ok = [r for r in rows if r["status"] == 200 and not r.get("function_error")]
    bad = [r for r in rows if not (r["status"] == 200 and not r.get("function_error"))]
    log(f"  {len(ok)}/{n} answered in {b['wall_s']:.1f} s (submitted in {b['submit_s']:.2f} s); after: {after}")
    ids = {r["request_id"]: r for r in ok}
    deadline = time.monotonic() + 30     # every answered call's record, however long the writer lags
    while True:
        records = [x for x in system.usage_records(expect=n_records_before + len(ok), timeout=30)
                   if x.get("request_id") in ids]
        if len(records) >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out: dict = {"calls": n, "rate_per_s": rate_per_s, "answered_ok": len(ok), "failed": n - len(ok),
                 "failure_samples": [r.get("error") or r.get("body") for r in bad][:5],
                 "generate_s": generate_s, "cap": CAP, "submit_s": round(b["submit_s"], 3),
                 "wall_s": round(b["wall_s"], 3), "usage_records": len(records), "stalled": b["stalled"],
                 "failure_kinds": dict(Counter((r.get("error") or r.get("body") or "")[:160]
                                               for r in bad)),
                 "function_state_after": state, "cpu_ms_per_call": cpu, "dispatcher_errors": _dispatcher_errors(system)}
    if b["stalled"]:
        log(f"  STALLED: no answer for {stall_s:.0f} s; function state {state}")
    # overheads, from the answers' headers
    ran = {r["request_id"]: h.run_of(r["headers"]) for r in ok}
    wait = [float(ran[r["request_id"]]["wait-ms"]) for r in ok if "wait-ms" in ran[r["request_id"]]]
    dur = {rid: float(f.get("duration-ms", "nan")) for rid, f in ran.items()}
    nonwait = [r["ms"] - float(ran[r["request_id"]]["wait-ms"]) - dur[r["request_id"]] for r in ok
               if "wait-ms" in ran[r["request_id"]]]
    out["latency_ms"] = summary(r["ms"] for r in ok)
    # Before the send: connecting. A burst beyond the listen backlog has SYNs dropped and retried
    # 1 s later (then 3 s): those calls were late by that much before any latency above began.
    out["connect_ms"] = summary(r["connect_ms"] for r in ok)
    out["connects_retried"] = sum(1 for r in ok if r["connect_ms"] >= 900)
    out["wait_ms"] = summary(wait)
    out["non_wait_overhead_ms"] = summary(nonwait)
    if records:
        starts = [_ts(x["start"]) for x in records]
        ends = [_ts(x["end"]) for x in records]
        span = max(ends) - min(starts)
        mean_dur = sum(x["duration_ms"] for x in records) / len(records)
        out["drain_s"] = round(span, 3)
        out["drain_calls_per_s"] = round(len(records) / span, 2) if span else None
        out["ideal_calls_per_s"] = CAP / generate_s
        out["ratio_to_ideal"] = ratio(out["drain_calls_per_s"], CAP / generate_s)
        out["mean_duration_ms"] = round(mean_dur, 3)
        # slot time per call beyond the function's own execution: the dispatcher's cost per queued call
        out["slot_overhead_per_call_ms"] = round(CAP * span * 1000 / len(records) - mean_dur, 3)
        # FIFO. Entry: when the call joined the queue (the record's `accepted`). Queue order: when its
        # slot was granted, entry + wait_ms (which counts from that same moment). Start order: when it went out to its container, which with
        # 3 containers also depends on how soon each container asks for its next call.
        entered = {x["request_id"]: _ts(x["accepted"]) if x.get("accepted") else _ts(x["start"]) - x["wait_ms"] / 1000
                   for x in records}
        granted = {x["request_id"]: entered[x["request_id"]] + x["wait_ms"] / 1000 for x in records}
        by_entry = sorted(records, key=lambda x: entered[x["request_id"]])
        start_seq = [_ts(x["start"]) for x in by_entry]
        grant_seq = [granted[x["request_id"]] for x in by_entry]
        pairs = len(records) * (len(records) - 1) // 2
        inv = inversions(start_seq)
        # inversions beyond the 1 ms resolution of record times and the race of concurrent arrivals:
        # entries >= 10 ms apart
        ent = [entered[x["request_id"]] for x in by_entry]

        def far_inverted(seq: list[float], key: list[float], slack: float = 0.0) -> int:
            return sum(1 for i in range(len(seq)) for j in range(i + 1, len(seq))
                       if key[j] - key[i] >= 0.010 and seq[i] - seq[j] > slack)
        far = far_inverted(start_seq, ent)
        # a grant time is entry (1 ms resolution) + wait: two of them compare to within 1 ms
        far_grant = far_inverted(grant_seq, ent, slack=0.001)
        # start order against queue order: calls granted >= 10 ms apart that started the other way round
        by_grant = sorted(records, key=lambda x: granted[x["request_id"]])
        far_start_vs_grant = far_inverted([_ts(x["start"]) for x in by_grant],
                                          [granted[x["request_id"]] for x in by_grant])
        late = sorted(((_ts(x["start"]) - granted[x["request_id"]]) * 1000 for x in records))
        start_rank = {id(x): k for k, x in enumerate(sorted(by_entry, key=lambda x: _ts(x["start"])))}
        disp = [abs(start_rank[id(x)] - k) for k, x in enumerate(by_entry)]
        seq_of = {r["request_id"]: r["seq"] for r in ok}
        client_seq = [seq_of[x["request_id"]] for x in sorted(records, key=lambda x: _ts(x["start"]))]
        # where the non-wait time is: before the call entered the queue, and after its execution ended
        by_id = {r["request_id"]: r for r in ok}
        out["before_entry_ms"] = summary((entered[x["request_id"]] - by_id[x["request_id"]]["sent_wall"]) * 1000
                                         for x in records)
        # The non-wait time above is nearly all before entry: the burst's connections queue in the
        # front door (the kernel's accept backlog, a thread each under the GIL) for as long as the
        # client sends faster than the dispatcher takes them in; once a thread has one it joins the
        # queue in ~0.4 ms. At the cap that queueing only moves time from the slot queue to the
        # front door (the answer waits for the slot either way). What the queued path itself
        # costs a call: latency - front door - wait - duration, from joining the queue to the answer.
        out["queued_path_overhead_ms"] = summary(
            by_id[x["request_id"]]["ms"] - (entered[x["request_id"]] - by_id[x["request_id"]]["sent_wall"]) * 1000
            - float(ran[x["request_id"]]["wait-ms"]) - dur[x["request_id"]]
            for x in records if "wait-ms" in ran[x["request_id"]])
        # the slots' busy share: below 1 by what the dispatcher costs between calls (the function's
        # own overshoot of its 10 ms is in its duration, which ratio_to_ideal also counts)
        out["slot_utilisation"] = ratio(sum(x["duration_ms"] for x in records), CAP * span * 1000)
        # The drain once every call has joined the queue: the burst's intake (a thousand requests
        # parsed, authenticated and sent to SQS) no longer shares the 2 cores with the functions.
        last_entry = max(ent)
        out["intake_calls_per_s"] = round(len(ent) / (last_entry - min(ent)), 1) if last_entry > min(ent) else None
        late_runs = [x for x in records if _ts(x["start"]) >= last_entry]
        # Who kept the cores busy while the calls were still coming in, and after: the drain is slower
        # while the machine's cores are all taken (the client sending, the intake, moto's queue).
        out["cores_in_use"] = {**cores_by_phase(core_samples, last_entry), "cpus": os.cpu_count()}
        if len(late_runs) >= 30:
            late_span = max(_ts(x["end"]) for x in late_runs) - min(_ts(x["start"]) for x in late_runs)
            out["drain_after_intake_calls_per_s"] = round(len(late_runs) / late_span, 2) if late_span else None
        # The Runtime API's round trip of each call: from its event going out to its answer coming in,
        # less the handler's own time (its answer's generate_ms). The function is not slowed by the
        # intake (generate_ms stays ~10.1 ms); this is what the dispatcher's side adds, split at the
        # last entry.
        hop = {"during_intake": [], "after_intake": []}
        for x in records:
            try:
                own = float(json.loads(by_id[x["request_id"]]["body"])["generate_ms"])
            except (KeyError, TypeError, ValueError):
                continue
            hop["during_intake" if _ts(x["start"]) < last_entry else "after_intake"].append(x["duration_ms"] - own)
        out["runtime_hop_ms"] = {phase: summary(v) for phase, v in hop.items() if len(v) >= 30}
        # The end from the answer's own headers (started-at, in µs, + duration-ms): the record's `end`
        # is cut to the ms, which read this span ~0.5 ms long on average (0.75 ms in one run).
        out["after_end_ms"] = summary(
            (r["done_wall"] - float(ran[r["request_id"]]["started-at"]) - dur[r["request_id"]] / 1000) * 1000
            for r in ok if "started-at" in ran[r["request_id"]])
        t0 = min(ent)
        out["series"] = [[round(entered[x["request_id"]] - t0, 4), round(_ts(x["start"]) - t0, 4),
                          round(x["wait_ms"], 1)] for x in by_entry]   # for the plot: entry vs start
        gaps = {"<=10ms": 0, "10-100ms": 0, "100-500ms": 0, ">500ms": 0}
        for i in range(len(by_entry)):
            for j in range(i + 1, len(by_entry)):
                if start_seq[i] > start_seq[j]:
                    g = ent[j] - ent[i]
                    gaps["<=10ms" if g <= 0.010 else "10-100ms" if g <= 0.1 else "100-500ms" if g <= 0.5
                         else ">500ms"] += 1
        out["fifo"] = {"inversions_by_entry_gap": gaps, "pairs": pairs, "inversions": inv, "inverted_fraction": ratio(inv, pairs),
                       "inversions_entries_10ms_apart": far,
                       "queue_order_inversions_entries_10ms_apart": far_grant,
                       "start_vs_grant_inversions_10ms_apart": far_start_vs_grant,
                       "grant_to_start_ms": summary(late), "grant_to_start_max_ms": round(late[-1], 1),
                       "max_displacement": max(disp),
                       "median_displacement": percentile(disp, 50),
                       "client_submit_order_inversions": inversions(client_seq),
                       "start_resolution_ms": 1}
    out["dispatcher"] = {"before": before, "after": after, "peak_threads": peak_threads[0],
                         "peak_rss_mib": after.get("VmHWM"),
                         "rss_growth_mib": round((after.get("VmHWM") or 0) - (before.get("VmHWM") or 0), 1)}
    # The drain's ceiling on this machine: the Lambda runtime loop alone (3 awslambdaric processes of
    # the same function, next event always ready, no dispatcher), as figure 2 compares with; 300/s
    # is not reachable (the 10 ms sleep overshoots, awslambdaric works per call).
    loop = None
    try:
        loop = RuntimeLoopFloor(generate_s=generate_s, processes=CAP)
        loop.run(30)
        lr = loop.run(min(n, 600))
        out["runtime_loop_calls_per_s"] = round(lr["calls_per_s"], 2)
        out["ratio_to_runtime_loop"] = ratio(out.get("drain_calls_per_s"), lr["calls_per_s"])
    except Exception as e:
        out["runtime_loop_error"] = str(e)
    finally:
        if loop is not None:
            loop.stop()
    if profile:   # after the floor, which the profiled burst's bookkeeping would share the CPUs with
        out["profile"] = _profiled_burst(system, n, akid, secret, stall_s, rate_per_s)
    fifo = out.get("fifo", {})   # kept: in the queue (grants) and at the containers (starts)
    fifo_ok = fifo.get("queue_order_inversions_entries_10ms_apart", 1) == 0 and \
        fifo.get("inversions_entries_10ms_apart", 1) == 0
    out["goal"] = {"target": "all answered, FIFO kept", "all_answered": len(ok) == n, "fifo_kept": fifo_ok,
                   "met": len(ok) == n and fifo_ok}
    return out


def _profiled_burst(system, n: int, akid: str, secret: str, stall_s: float, rate_per_s: float | None) -> dict:
    """Where the dispatcher's time goes in such a burst: the same burst once more, under py-spy.
    Not the measured one: py-spy walks every thread's stack (~1,000 here) on the 2 cores the burst
    shares, and with it attached figure 4's non-wait median was 30-155 ms against 11-27 ms without
    (alternating quick runs)."""
    from .profile import Spy
    spy = Spy(system.dispatcher.pid, "queue", rate=50)   # ~1,000 threads to sample: keep its own cost low
    h.burst(system.url, akid, secret, BETA, n, stall_s=stall_s, rate_per_s=rate_per_s)
    prof = spy.stop(n)
    prof["note"] = "a second burst of the same calls, profiled; the figures come from the first"
    return prof


# ---------------------------------------------------------------- figure 5
def scaling(system, floor: h.FloorServer, points: dict[int, int], generate_s: float = 0.05, log=print) -> dict:
    """Overhead and throughput as clients grow (same system and 50 ms function as figure 2),
    each point beside the same harness against the floor server (50 ms handler, semaphore of 3)."""
    out = {"generate_s": generate_s, "cap": CAP, "points": []}
    pool = max(points) + 8
    client = h.boto3_lambda(system, pool)
    fclient = h.boto3_client(floor.url, pool=pool)
    h.run_clients(lambda: client, lambda c: h.boto3_invoke(c, BETA), CAP, CAP * 4)  # warm 3 environments
    for clients, calls in points.items():
        f = h.run_clients(lambda: fclient, lambda c: h.boto3_invoke(c, "floor-gen50"), clients, calls)
        frate = f["ok"] / f["wall_s"] if f["wall_s"] else 0.0
        meter = h.CpuMeter(system)
        r = h.run_clients(lambda: client, lambda c: h.boto3_invoke(c, BETA), clients, calls)
        cpu = meter.stop(r["ok"])
        rows = r["rows"]
        rate = r["ok"] / r["wall_s"] if r["wall_s"] else 0.0
        ideal = min(clients, CAP) / generate_s
        non_wait = [x["ms"] - (x["wait_ms"] or 0) - (x["generate_ms"] or 0) for x in rows]
        ideal_latency = max(clients / CAP, 1) * generate_s * 1000
        p = {"clients": clients, "calls": calls, "ok": r["ok"], "errors": len(r["errors"]),
             "calls_per_s": round(rate, 2), "ideal_calls_per_s": ideal, "ratio_to_ideal": ratio(rate, ideal),
             "latency_ms": summary(x["ms"] for x in rows), "ideal_latency_ms": round(ideal_latency, 1),
             "overhead_ms": summary(_overheads(rows)),
             "non_wait_overhead_ms": summary(non_wait),
             "wait_ms": summary(x["wait_ms"] for x in rows if x["wait_ms"] is not None),
             "hop_ms": summary(x["duration_ms"] - (x["generate_ms"] or 0) for x in rows
                               if x["duration_ms"] is not None),
             "dispatcher": h.proc_status(system.dispatcher.pid), "cpu_ms_per_call": cpu,
             "floor": {"calls_per_s": round(frate, 2), "ratio_to_ideal": ratio(frate, ideal),
                       "latency_ms": summary(x["ms"] for x in f["rows"]),
                       "overhead_ms": summary(_overheads(f["rows"]))}}
        out["points"].append(p)
        log(f"  {clients:>3} clients: {rate:6.1f}/s of {ideal:.0f} ({p['ratio_to_ideal']}; floor {frate:.1f}/s), "
            f"non-wait overhead median {p['non_wait_overhead_ms']['median']:.2f} ms, "
            f"wait median {p['wait_ms']['median']} ms")
    return out
