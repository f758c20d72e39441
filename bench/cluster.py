"""Figure 6: cluster mode (MK1_CLUSTER=1) beside the single process of figures 1 and 2.

Two dispatcher processes share one moto server. The same measurements as figures 1
and 2, on a cluster-mode system:
- warm overhead, one client, free slot, alternating between the two dispatchers: the
  fast path pays a DynamoDB lease (conditional put, then delete) where one process
  counts in memory;
- throughput at the cap, 30 clients spread over both dispatchers: every waiting call is a
  message in the shared queue carrying the whole call, served by whichever dispatcher
  gets a lease first (lease, claim, and a reply queue when it is not the caller's).
"""
from __future__ import annotations

from . import harness as h
from helpers import Peer  # noqa: E402  (tests/helpers.py: harness puts it on sys.path)
from .figures import ALPHA, BETA, CAP
from .stats import percentile, ratio, summary


def cluster_mode(system, reps: int, calls: int, tput_calls: int, single: dict, clients: int = 30,
                 generate_s: float = 0.05, log=print) -> dict:
    """`single`: this run's figures 1 and 2 (from one process), for the ratios."""
    second = Peer(system, "second")
    try:
        akid, secret = system.keys(h.USER)
        first_c = h.boto3_lambda(system, clients + 8)
        second_c = h.boto3_client(second.url, akid, secret, clients + 8)
        both = [first_c, second_c]
        for c in both:                       # cold starts out of the way, on both dispatchers
            for _ in range(10):
                h.boto3_invoke(c, ALPHA)
        overhead: list[float] = []
        rep_medians = []
        for rep in range(reps):
            batch = []
            for i in range(calls):
                ms, payload, _ = h.boto3_invoke(both[i % 2], ALPHA)
                batch.append(ms - payload.get("generate_ms", 0.0))
            overhead.extend(batch)
            rep_medians.append(round(percentile(batch, 50), 4))
        rr = [0]

        def make():
            rr[0] += 1
            return both[rr[0] % 2]
        h.run_clients(make, lambda c: h.boto3_invoke(c, BETA), clients, clients * 2)   # warm 3 containers
        r = h.run_clients(make, lambda c: h.boto3_invoke(c, BETA), clients, tput_calls)
        rate = r["ok"] / r["wall_s"] if r["wall_s"] else 0.0
        log(f"  cluster: warm overhead {percentile(overhead, 50):.2f} ms, at the cap {rate:.1f}/s "
            f"({len(r['errors'])} errors)")
    finally:
        second.stop()
    ideal = CAP / generate_s
    single_ms = single.get("1", {}).get("variants", {}).get("mk1_boto3", {}).get("overhead_ms", {}).get("median")
    single_rate = single.get("2", {}).get("targets", {}).get("mk1", {}).get("calls_per_s", {}).get("median")
    med = percentile(overhead, 50)
    return {"dispatchers": 2, "reps": reps, "calls_per_rep": calls, "clients": clients,
            "overhead_ms": summary(overhead), "rep_medians_ms": rep_medians,
            "throughput": {"calls": tput_calls, "ok": r["ok"], "errors": len(r["errors"]),
                           "error_samples": r["errors"][:3], "calls_per_s": round(rate, 2),
                           "ratio_to_ideal": ratio(rate, ideal), "ideal_calls_per_s": ideal,
                           "wait_ms": summary(x["wait_ms"] for x in r["rows"] if x["wait_ms"] is not None)},
            "single_process": {"overhead_ms": single_ms, "calls_per_s": single_rate},
            "ratios": {"overhead cluster/single": ratio(med, single_ms) if single_ms else None,
                       "extra overhead ms": round(med - single_ms, 3) if single_ms else None,
                       "throughput cluster/single": ratio(rate, single_rate) if single_rate else None}}
