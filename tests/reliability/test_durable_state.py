"""Nothing accepted is lost when the embedded AWS and the dispatcher die together (SIGKILL) and come
back as `make up` brings them back: the control plane (a user's function, its version, alias, URL and
concurrency) is replayed from MK1_HOME/aws-state.jsonl, and every accepted Event call runs exactly
once, queued again from MK1_HOME/accepted-calls.jsonl where its queue came back empty; every
settled call's result is still answered (MK1_HOME/async-results.jsonl)."""
import base64
import json
import time

from botocore.credentials import Credentials

from helpers import deploy_code, wait_until
from my_mk1_homework.signed import signed_get

CODE = '''
import time
def handler(event, context):
    time.sleep(0.3)
    return {"n": event.get("n")}
'''


def test_a_hard_kill_of_aws_and_dispatcher_loses_nothing_accepted(make_system):
    s = make_system(MK1_AWS_PERSIST="1")
    deploy_code(s, "durable", CODE, Timeout=10)
    lam = s.aws("lambda")
    version = lam.publish_version(FunctionName="durable")["Version"]
    lam.create_alias(FunctionName="durable", Name="live", FunctionVersion=version)
    url = lam.create_function_url_config(FunctionName="durable", AuthType="NONE")["FunctionUrl"]
    lam.put_function_concurrency(FunctionName="durable", ReservedConcurrentExecutions=1)

    admin = s.lambda_client("admin")
    wait_until(lambda: admin.invoke(FunctionName="durable:live", Payload=b'{"n": -1}')["StatusCode"] == 200,
               timeout=20, what="the function running")
    ids = [admin.invoke(FunctionName="durable:live", InvocationType="Event", Payload=json.dumps({"n": i}).encode())
           ["ResponseMetadata"]["RequestId"] for i in range(8)]
    time.sleep(0.5)   # one or two have run; the rest wait in the queue (cap 1, 0.3 s each)
    settled = [rid for rid in ids if _result(s, rid).get("status") == "succeeded"]

    keys = {u: s.keys(u) for u in ("user1", "user2", "admin")}
    s.crash_and_restart()

    assert {u: s.keys(u) for u in keys} == keys   # the users' keys came back as they were
    lam = s.aws("lambda")
    assert lam.get_alias(FunctionName="durable", Name="live")["FunctionVersion"] == version
    assert lam.get_function_url_config(FunctionName="durable")["FunctionUrl"] == url
    assert lam.get_function_concurrency(FunctionName="durable")["ReservedConcurrentExecutions"] == 1
    records = s.records_for(ids, timeout=60)
    runs = {rid: [r for r in records if r["request_id"] == rid and r["status"] == "success"] for rid in ids}
    assert all(len(r) == 1 for r in runs.values()), {rid: len(r) for rid, r in runs.items()}
    # Both journals did the work: moto replayed the control plane, the dispatcher re-queued the calls.
    assert "replayed" in (s.home / "moto.log").read_text(errors="replace")
    assert "accepted Event calls again" in s.log()
    # Every call's result is there to fetch, those settled before the crash too (async-results.jsonl).
    results = {rid: _result(s, rid) for rid in ids}
    assert {r.get("status") for r in results.values()} == {"succeeded"}, results
    assert [json.loads(base64.b64decode(results[rid]["payload"]))["n"] for rid in ids] == list(range(8))
    assert settled, "no call had settled before the crash: the test shows only the journal's replay"


def _result(s, request_id: str) -> dict:
    status, body = signed_get(s.url, f"/mk1/invocations/{request_id}", Credentials(*s.keys("admin")), "us-east-1")
    return body if status == 200 else {}


def test_an_event_call_killed_before_its_record_is_written_runs_again(make_system):
    """An Event call settles (its result is there) a moment before its usage record is written (the
    records go out in batches). Both die hard in between: the journal must not say the call ended
    until its record is written, or the record is lost for good. Batches of 3 s make the window wide."""
    s = make_system(MK1_AWS_PERSIST="1", MK1_USAGE_BATCH_MS="3000")
    deploy_code(s, "durable", CODE, Timeout=10)
    admin = s.lambda_client("admin")
    wait_until(lambda: admin.invoke(FunctionName="durable", Payload=b'{"n": -1}')["StatusCode"] == 200,
               timeout=20, what="the function running")
    before = len(s.usage_records(expect=1))
    rid = admin.invoke(FunctionName="durable", InvocationType="Event", Payload=b'{"n": 7}')["ResponseMetadata"][
        "RequestId"]
    wait_until(lambda: _result(s, rid).get("status"), lambda st: st == "succeeded", timeout=10, interval=0.02,
               what="the call to settle")
    assert len(s.usage_records()) == before, "its record was written already: the kill comes too late to tell"
    s.crash_and_restart()
    records = s.records_for([rid], timeout=60)
    assert [r["status"] for r in records] == ["success"], records
