"""Load: many clients over both functions and all users; nothing lost, nothing doubled, cap held.

Every call carries a unique prompt, so each answer is checked against the call it answers
(no answer lost, duplicated or delivered to the wrong caller). The default run is short
(40 clients, 10 s); the soak run (`-m soak`) is 200 clients for 60 s.
"""
import json
import random
import threading
import time
from collections import Counter

import pytest

from relhelp import peak_overlap, records_by_id
from security.rawhttp import signed_invoke

CALLS = [("user1", "RuntimeAlpha"), ("user2", "RuntimeBeta"), ("admin", "RuntimeAlpha"), ("admin", "RuntimeBeta")]
DENIED = [("user1", "RuntimeBeta"), ("user2", "RuntimeAlpha")]
FAST = dict(MK1_ALPHA_GENERATE_SECONDS="0.02", MK1_BETA_GENERATE_SECONDS="0.02", MK1_USAGE_BATCH_MS="50")


def expected(function: str, prompt: str) -> str:
    words = prompt.split()
    if function == "RuntimeAlpha":
        return "[alpha] " + " ".join(reversed(words))
    return f"[beta] {prompt.upper()} ({len(words)} words)"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_load(s, clients: int, seconds: float) -> dict:
    keys = {u: s.keys(u) for u in ("user1", "user2", "admin")}
    results, lock = [], threading.Lock()
    stop_at = time.monotonic() + seconds
    start = threading.Barrier(clients)

    def client(c: int):
        rnd = random.Random(c)
        n = 0
        start.wait()
        while time.monotonic() < stop_at:
            n += 1
            user, fn = rnd.choice(DENIED) if rnd.random() < 0.05 else rnd.choice(CALLS)
            prompt = f"c{c} n{n} {user}"
            t0 = time.monotonic()
            try:
                a = signed_invoke(s.url, keys[user], fn, json.dumps({"prompt": prompt}).encode(), timeout=150)
                out = (a.status, a.headers.get("x-amzn-requestid"), a.body, a.headers.get("x-amzn-errortype"))
            except Exception as e:  # noqa: BLE001 - a lost answer is what we count
                out = ("lost", None, repr(e).encode(), None)
            with lock:
                results.append({"client": c, "n": n, "user": user, "function": fn, "prompt": prompt,
                                "status": out[0], "request_id": out[1], "body": out[2], "error": out[3],
                                "latency": time.monotonic() - t0})

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 180)
    assert not any(t.is_alive() for t in threads), "clients still waiting after the bound"
    return {"results": results}


def check(s, results, rss_before: float, clients: int, seconds: float, skip: int) -> None:
    """`skip`: the usage records before the run (the warm-up)."""
    sent = Counter((r["client"], r["n"]) for r in results)
    assert all(v == 1 for v in sent.values())
    lost = [r for r in results if r["status"] == "lost"]
    assert not lost, lost[:5]
    by_status = Counter(r["status"] for r in results)
    ok = [r for r in results if r["status"] == 200]
    denied = [r for r in results if r["status"] == 403]
    throttled = [r for r in results if r["status"] == 429]
    other = [r for r in results if r["status"] not in (200, 403, 429)]
    assert not other, other[:5]
    assert all(r["error"] == "AccessDeniedException" and (r["user"], r["function"]) in DENIED for r in denied)
    assert all(r["error"] == "TooManyRequestsException" for r in throttled)
    # each answer is the answer to *this* call
    for r in ok:
        assert json.loads(r["body"])["response"] == expected(r["function"], r["prompt"]), r
    ids = Counter(r["request_id"] for r in results)
    assert all(v == 1 for v in ids.values()), [k for k, v in ids.items() if v > 1][:5]

    # one usage record per accepted call (and per throttled-after-wait), none for the denied
    accepted = {r["request_id"] for r in ok}
    s.records_for(accepted, timeout=60)
    recs = s.usage_records()[skip:]
    count = records_by_id(recs)
    assert all(count[i] == 1 for i in accepted), [i for i in accepted if count[i] != 1][:5]
    assert not ({r["request_id"] for r in denied} & set(count))
    assert set(count) <= accepted | {r["request_id"] for r in throttled}
    for r in recs:
        assert r["status"] == "success" or (r["status"] == "throttled" and r["request_id"] in
                                            {t["request_id"] for t in throttled}), r
    # the reserved concurrency of 3 is never exceeded, per function, over the whole run
    peaks = {fn: peak_overlap([r for r in recs if r["function"] == fn and r["status"] == "success"])
             for fn in ("RuntimeAlpha", "RuntimeBeta")}
    st = s.status()
    for fn, info in st["functions"].items():
        assert peaks[fn] <= 3 and info["peak_in_use"] <= 3, (fn, peaks, info)
        assert len(info["containers"]) <= 3, info["containers"]
    rss_after = rss_mb(s.dispatcher.pid)
    lat = sorted(r["latency"] for r in ok)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"\nload: {clients} clients x {seconds:.0f} s: {len(results)} calls ({len(results) / seconds:.0f}/s), "
          f"statuses {dict(by_status)}; latency p50 {p(0.5):.0f} ms, p95 {p(0.95):.0f} ms, p99 {p(0.99):.0f} ms, "
          f"max {lat[-1] * 1000:.0f} ms; peak concurrency {peaks}; "
          f"dispatcher RSS {rss_before:.0f} -> {rss_after:.0f} MB")
    assert len(ok) > clients, "the load test barely ran"
    assert rss_after - rss_before < 80, f"dispatcher RSS grew {rss_after - rss_before:.0f} MB"


def _warm(s) -> None:
    for user, fn in CALLS:
        s.function(fn, user).map(["warm up"] * 3, 3)


def test_load_short(make_system):
    s = make_system(**FAST)
    _warm(s)
    n0 = len(s.usage_records(expect=12))
    rss_before = rss_mb(s.dispatcher.pid)
    out = run_load(s, clients=40, seconds=10)
    check(s, out["results"], rss_before, 40, 10, skip=n0)


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_load_soak(make_system):
    s = make_system(**FAST)
    _warm(s)
    n0 = len(s.usage_records(expect=12))
    rss_before = rss_mb(s.dispatcher.pid)
    out = run_load(s, clients=200, seconds=60)
    check(s, out["results"], rss_before, 200, 60, skip=n0)
