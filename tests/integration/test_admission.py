"""Reserved concurrency, the SQS queue, throttling and async invocations."""
import json
import threading

import pytest
from botocore.exceptions import ClientError

from helpers import peak_concurrency, wait_until
from my_mk1_homework import Throttled

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)


def _burst(fn, n, prompt="p"):
    out, lock = [], threading.Lock()
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait()
        try:
            r = fn.invoke({"prompt": f"{prompt} {i}"})
        except Exception as e:  # noqa: BLE001 - collected for the assertions
            r = e
        with lock:
            out.append(r)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


def _alpha(sys_) -> dict:
    return sys_.status()["functions"]["RuntimeAlpha"]


def test_queue_bound_gives_429_with_lambda_body(make_system):
    sys_ = make_system(MK1_ALPHA_GENERATE_SECONDS="0.6", MK1_MAX_QUEUE_DEPTH="2")
    fn = sys_.function("RuntimeAlpha", "admin")
    fn.generate("warm")
    results = _burst(fn, 8)
    throttled = [r for r in results if isinstance(r, Throttled)]
    ok = [r for r in results if not isinstance(r, Exception)]
    assert len(ok) == 5 and len(throttled) == 3
    assert "RuntimeAlpha is busy: 3 of 3 executions running, 2 waiting" in throttled[0].message
    raw = sys_.lambda_client("admin")
    # the raw wire shape, as boto3 sees it
    def flood():
        try:
            raw.invoke(FunctionName="RuntimeAlpha", Payload=b'{"prompt":"x"}')
        except ClientError:
            pass
    ts = [threading.Thread(target=flood) for _ in range(5)]
    for t in ts:
        t.start()
    wait_until(lambda: _alpha(sys_), lambda f: f["in_use"] == 3 and f["waiting"] == 2,
               what="3 calls running and 2 waiting (the queue bound)")
    with pytest.raises(ClientError) as e:
        raw.invoke(FunctionName="RuntimeAlpha", Payload=b'{"prompt":"x"}')
    for t in ts:
        t.join(30)
    resp = e.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert resp["Error"]["Code"] == "TooManyRequestsException"
    assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert "retryAfterSeconds" in resp


def test_max_wait_bound_and_throttled_usage_record(make_system):
    sys_ = make_system(MK1_ALPHA_GENERATE_SECONDS="1.5", MK1_MAX_WAIT_MS="300")
    fn = sys_.function("RuntimeAlpha", "admin")
    fn.generate("warm")
    results = _burst(fn, 5)
    throttled = [r for r in results if isinstance(r, Throttled)]
    assert len(throttled) == 2 and "waited" in throttled[0].message
    recs = sys_.usage_records(expect=6)
    assert sum(1 for r in recs if r["status"] == "throttled") == 2


def test_reserved_concurrency_changes_live(make_system):
    sys_ = make_system(MK1_ALPHA_GENERATE_SECONDS="0.3")
    lam = sys_.aws("lambda")
    lam.put_function_concurrency(FunctionName="RuntimeAlpha", ReservedConcurrentExecutions=1)
    fn = sys_.function("RuntimeAlpha", "admin")
    _wait_reserved(sys_, 1)
    results = _burst(fn, 4)
    assert all(not isinstance(r, Exception) for r in results)
    ids = {r.request_id for r in results}
    recs = [r for r in sys_.usage_records(expect=4) if r["request_id"] in ids]
    assert len(recs) == 4 and peak_concurrency(recs) == 1
    lam.put_function_concurrency(FunctionName="RuntimeAlpha", ReservedConcurrentExecutions=0)
    _wait_reserved(sys_, 0)
    with pytest.raises(Throttled) as e:
        fn.generate("refused")
    assert "reserved concurrency 0" in e.value.message


def _wait_reserved(sys_, n: int) -> None:
    wait_until(lambda: _alpha(sys_)["reserved_concurrency"], lambda got: got == n, interval=0.1,
               what=f"the dispatcher to use reserved concurrency {n}")


def test_async_invocation_runs_and_result_is_fetched(system):
    fn = system.function("RuntimeAlpha", "user1")
    call = fn.spawn("async hello")
    assert call.request_id
    assert call.result(timeout=30) == "[alpha] hello async"
    other = system.function("RuntimeBeta", "user2")
    from my_mk1_homework import NotFound
    from my_mk1_homework.client import Call
    with pytest.raises(NotFound):
        Call(other, call.request_id).status()  # user2 cannot read user1's result


def test_failing_async_call_retries_then_dead_letter_queue(make_system):
    sys_ = make_system(MK1_ASYNC_RETRY_BACKOFF_MS="100")
    raw = sys_.lambda_client("admin")
    r = raw.invoke(FunctionName="RuntimeBeta", InvocationType="Event", Payload=b'{"not_prompt": 1}')
    assert r["StatusCode"] == 202
    rid = r["ResponseMetadata"]["RequestId"]
    fn = sys_.function("RuntimeBeta", "admin")
    from my_mk1_homework.client import Call
    final = wait_until(lambda: Call(fn, rid).status(), lambda st: st["status"] == "failed", timeout=30,
                       interval=0.2, what="the Event call to fail for good")
    assert int(float(final["attempts"])) == 3
    sqs = sys_.aws("sqs")
    dlq = sqs.get_queue_url(QueueName="mk1-RuntimeBeta-dlq")["QueueUrl"]
    msgs = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    bodies = [json.loads(m["Body"]) for m in msgs]
    assert any(b["request_id"] == rid and b["attempts"] == 3 for b in bodies)
    recs = [x for x in sys_.usage_records(expect=3) if x["request_id"] == rid]
    assert [x["status"] for x in recs] == ["function_error"] * 3


def test_waiting_calls_sit_in_the_sqs_queue(make_system):
    sys_ = make_system(MK1_BETA_GENERATE_SECONDS="1.0")
    fn = sys_.function("RuntimeBeta", "admin")
    fn.generate("warm")
    sqs = sys_.aws("sqs")
    url = sqs.get_queue_url(QueueName="mk1-RuntimeBeta-queue")["QueueUrl"]
    t = threading.Thread(target=_burst, args=(fn, 7))
    t.start()

    def depth() -> int:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
    wait_until(depth, lambda n: n >= 4, timeout=5, what="4 waiting calls in the SQS queue")
    t.join(60)


def test_async_call_larger_than_an_sqs_message_runs_and_keeps_its_result(system):
    # 700 KB: over SQS's 256 KiB message; under Lambda's 1 MB Event limit
    raw = system.lambda_client("admin")
    r = raw.invoke(FunctionName="RuntimeAlpha", InvocationType="Event",
                   Payload=json.dumps({"prompt": "big one", "padding": "x" * 700_000}).encode())
    assert r["StatusCode"] == 202
    from my_mk1_homework.client import Call
    assert Call(system.function("RuntimeAlpha", "admin"), r["ResponseMetadata"]["RequestId"]).result(
        timeout=60) == "[alpha] one big"
    left = system.aws("s3").list_objects_v2(Bucket="mk1-code", Prefix="calls/").get("KeyCount", 0)
    assert left == 0, "a spilled payload is deleted once its call succeeded"
