"""Cluster mode: several dispatcher processes on one AWS endpoint hold the cap globally."""
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import ClientError
from chalicelib.record.queries import query
from my_mk1_homework.run_header import run_of
from helpers import Peer, peak_concurrency, wait_until

CLUSTER = {"MK1_CLUSTER": "1", "MK1_LEASE_MS": "2000", "MK1_SQS_VISIBILITY_S": "3",
           "MK1_ALPHA_GENERATE_SECONDS": "0.1", "MK1_MAX_WAIT_MS": "60000"}


def clients(first, peers, fn, user="admin"):
    from my_mk1_homework import Function
    akid, secret = first.keys(user)
    return [Function(fn, user, access_key_id=akid, secret_access_key=secret, endpoint=u)
            for u in [first.url] + [p.url for p in peers]]


def wait_records(first, ids, timeout=30):
    """The usage table's records of these calls, once each of them has one."""
    ddb, ids = first.aws("dynamodb"), set(ids)
    return wait_until(lambda: [r for r in query(ddb, function="RuntimeAlpha") if r["request_id"] in ids],
                      lambda recs: {r["request_id"] for r in recs} >= ids, timeout=timeout, interval=0.2,
                      what=f"a usage record in the table for each of {len(ids)} calls")


def test_three_dispatchers_never_exceed_the_cap(make_system):
    first = make_system(**CLUSTER)
    peers = [Peer(first, "b"), Peer(first, "c")]
    try:
        fns = clients(first, peers, "RuntimeAlpha")
        results, lock = [], threading.Lock()

        def worker(i):
            r = fns[i % 3].invoke({"prompt": f"call {i}"})
            with lock:
                results.append(r)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(results) == 60 and all(r.function_error is None for r in results)
        recs = wait_records(first, {r.request_id for r in results})
        assert len(recs) == 60
        assert peak_concurrency(recs) <= 3
        assert len({r["container_id"].split("-")[0] for r in recs}) == 1
    finally:
        for p in peers:
            p.stop()


def test_killed_dispatcher_loses_no_async_call_and_its_slots_return(make_system):
    first = make_system(**{**CLUSTER, "MK1_ALPHA_GENERATE_SECONDS": "0.3"})
    peers = [Peer(first, "b"), Peer(first, "c")]
    try:
        victim, survivors = peers[0], [first, peers[1]]
        fns = clients(first, peers, "RuntimeAlpha")
        raw = [f._client for f in fns]
        accepted = [raw[1].invoke(FunctionName="RuntimeAlpha", InvocationType="Event",
                                  Payload=b'{"prompt":"async"}')["ResponseMetadata"]["RequestId"] for _ in range(12)]
        wait_until(lambda: victim.status()["functions"]["RuntimeAlpha"]["in_use"], timeout=10,
                   what="the victim to run one of the Event calls (and hold its slot)")
        victim.stop(signal.SIGKILL)
        sync_ok = [f.generate("survivor") for f in (fns[0], fns[2]) for _ in range(3)]
        assert all(x.startswith("[alpha]") for x in sync_ok)
        recs = wait_records(first, set(accepted), timeout=60)
        assert {r["request_id"] for r in recs} == set(accepted)      # every accepted call ran
        # slots held by the dead dispatcher came back: 3 calls can run at once again
        burst, lock = [], threading.Lock()

        def one():
            r = fns[0].invoke({"prompt": "again"})
            with lock:
                burst.append(r)
        ts = [threading.Thread(target=one) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert len(burst) == 3 and max(r.wait_ms for r in burst) < 200
    finally:
        for p in peers:
            p.stop()


def _invoke_raw(fn, prompt, padding=None):
    """boto3 invoke through a client class's client: (request id, dispatcher that ran it, status, body)."""
    try:
        r = fn._client.invoke(FunctionName="RuntimeAlpha", Payload=json.dumps({"prompt": prompt, **({"padding": padding} if padding else {})}).encode())
    except ClientError as e:     # 429 throttled, 503 its runner died, ...
        return e.response["ResponseMetadata"]["RequestId"], None, e.response["ResponseMetadata"]["HTTPStatusCode"], b""
    h = r["ResponseMetadata"]["HTTPHeaders"]
    return r["ResponseMetadata"]["RequestId"], run_of(h).get("dispatcher"), r["StatusCode"], r["Payload"].read()


def test_queued_sync_calls_run_on_any_dispatcher_and_answer_where_the_caller_is(make_system):
    first = make_system(**CLUSTER)
    peers = [Peer(first, "b"), Peer(first, "c")]
    try:
        fn = clients(first, peers, "RuntimeAlpha")[0]     # every call enters through the first dispatcher
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda i: _invoke_raw(fn, f"call {i}"), range(30)))
        assert all(status == 200 and b'"[alpha] ' in body for _, _, status, body in answers), answers
        ran_on = {d for _, d, _, _ in answers}
        assert len(ran_on) >= 2, f"queued calls should be taken by the other dispatchers too: {ran_on}"
        recs = wait_records(first, {rid for rid, _, _, _ in answers})
        assert sorted(r["request_id"] for r in recs) == sorted(rid for rid, _, _, _ in answers)  # one each
        assert peak_concurrency(recs) <= 3
    finally:
        for p in peers:
            p.stop()


def test_a_caller_that_gives_up_is_answered_once_and_its_call_never_runs(make_system):
    first = make_system(**{**CLUSTER, "MK1_ALPHA_GENERATE_SECONDS": "1.0", "MK1_MAX_WAIT_MS": "1500"})
    peers = [Peer(first, "b")]
    try:
        fn = clients(first, peers, "RuntimeAlpha")[0]
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda i: _invoke_raw(fn, f"call {i}"), range(12)))
        ok = {rid for rid, _, status, _ in answers if status == 200}
        throttled = {rid for rid, _, status, _ in answers if status == 429}
        assert len(ok) + len(throttled) == 12 and ok and throttled, answers
        recs = wait_records(first, ok | throttled)
        by_id = {}
        for r in recs:
            by_id.setdefault(r["request_id"], []).append(r["status"])
        assert {k: v for k, v in by_id.items() if len(v) != 1} == {}      # exactly one record per call
        assert {k for k, v in by_id.items() if v == ["success"]} == ok
        assert {k for k, v in by_id.items() if v == ["throttled"]} == throttled
        # nothing given up runs later on any dispatcher: once every dispatcher is quiet and the
        # queue empty, no call is left to run
        for d in [first, *peers]:
            d.wait_quiet(timeout=15)
        assert len([r for r in query(first.aws("dynamodb"), function="RuntimeAlpha")
                    if r["request_id"] in throttled and r["status"] != "throttled"]) == 0
    finally:
        for p in peers:
            p.stop()


def test_a_queued_sync_call_with_a_large_payload_crosses_dispatchers_through_s3(make_system):
    first = make_system(**CLUSTER)
    peers = [Peer(first, "b")]
    try:
        fn = clients(first, peers, "RuntimeAlpha")[0]
        padding = "x" * 400_000          # an event field beside the prompt: the message spills to S3
        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(lambda i: _invoke_raw(fn, f"call {i}", padding), range(9)))
        assert all(status == 200 and b'"[alpha] ' in body for _, _, status, body in answers), answers
        assert len({d for _, d, _, _ in answers}) == 2
        s3 = first.aws("s3")
        left = s3.list_objects_v2(Bucket="mk1-code", Prefix="calls/").get("KeyCount", 0)
        assert left == 0, "spilled payloads are deleted once used"
    finally:
        for p in peers:
            p.stop()


def test_a_caller_whose_runner_dies_mid_call_hears_so_within_lease_periods(make_system):
    first = make_system(**{**CLUSTER, "MK1_ALPHA_GENERATE_SECONDS": "4.0"})
    peer = Peer(first, "b")
    try:
        fn = clients(first, [peer], "RuntimeAlpha")[0]
        pool = ThreadPoolExecutor(6)
        started = time.monotonic()
        futures = [pool.submit(_invoke_raw, fn, f"call {i}") for i in range(6)]
        wait_until(lambda: peer.status()["functions"]["RuntimeAlpha"]["in_use"], timeout=20,
                   what="the peer to run one of first's queued calls")
        peer.stop(signal.SIGKILL)
        answers = [f.result(timeout=60) for f in futures]
        took = time.monotonic() - started
        pool.shutdown()
        statuses = sorted(status for _, _, status, _ in answers)
        assert statuses.count(503) >= 1 and set(statuses) <= {200, 503}, answers
        # 503 within a few lease periods (2 s here), long before MK1_MAX_WAIT_MS (60 s) + the timeout
        assert took < 30, took
    finally:
        peer.stop()
