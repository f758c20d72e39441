"""SQS event source mappings that really run (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html,
services-sqs-errorhandling.html for ReportBatchItemFailures, invocation-eventfiltering.html).

The function prints each record's body; its CloudWatch log lines show what ran, and usage records
(marked with the mapping as their trigger) show how many invocations and how many at once.
"""
import io
import json
import zipfile

from helpers import peak_concurrency, wait_until

CODE = '''
import json, time
def handler(event, context):
    failures = []
    for r in event["Records"]:
        assert r["eventSource"] == "aws:sqs" and r["awsRegion"] == "us-east-1"
        print("BODY " + r["body"])
        if r["body"].startswith("fail"):
            failures.append({"itemIdentifier": r["messageId"]})
    print("BATCH " + json.dumps([r["body"] for r in event["Records"]]))
    time.sleep(0.02)
    return {"batchItemFailures": failures}
'''


def _setup(system, name: str, fifo: bool = False, redrive: bool = False, visibility: str = "2",
           **mapping) -> tuple[str, str]:
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", CODE)
    lam, sqs = system.aws("lambda"), system.aws("sqs")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                        Code={"ZipFile": buf.getvalue()}, Timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    attrs = {"VisibilityTimeout": visibility}
    if fifo:
        attrs.update(FifoQueue="true", ContentBasedDeduplication="true")
    if redrive:
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url = sqs.create_queue(QueueName=name + (".fifo" if fifo else ""), Attributes=attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, **mapping)["UUID"]
    wait_until(lambda: [m["uuid"] for m in system.status()["mappings"]], lambda ids: uuid in ids,
               what="the dispatcher to poll the mapping")
    return url, uuid


def _send(system, url: str, bodies: list[str], **kw) -> None:
    sqs = system.aws("sqs")
    for i in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": b, **kw}
                                                     for n, b in enumerate(bodies[i:i + 10])])


def _bodies(system, name: str) -> list[str]:
    logs = system.aws("logs")
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}",
                                                                 filterPattern="BODY")
        events = sorted((e for p in pages for e in p["events"]), key=lambda e: (e["timestamp"], e["eventId"]))
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [e["message"].split("BODY ", 1)[1] for e in events if "BODY " in e["message"]]


def test_500_messages_each_processed_once_within_the_cap(system):
    # AWS's advice: a visibility timeout of at least 6 x the function's timeout. With the 2 s of the
    # other tests, a loaded 2-core machine let batches wait for a slot past it, and SQS (at least
    # once, as AWS's) delivered them again: 70 bodies twice in one full-suite run.
    url, uuid = _setup(system, "esm-load", BatchSize=10, visibility="30")
    bodies = [f"m{i}" for i in range(500)]
    _send(system, url, bodies)
    got = wait_until(lambda: _bodies(system, "esm-load"), lambda b: len(b) >= 500, timeout=120, interval=0.5,
                     what="500 bodies in the function's log")
    assert sorted(got) == sorted(bodies)                       # each exactly once
    system.wait_quiet(timeout=30)
    recs = [r for r in system.usage_records() if r["function"] == "esm-load"]
    assert recs and all(r["trigger"] and r["trigger"].endswith(uuid) for r in recs)
    assert peak_concurrency(recs) <= 3
    assert system.aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_a_partial_batch_failure_redelivers_only_those_then_the_dlq(system):
    url, _ = _setup(system, "esm-partial", redrive=True, BatchSize=10,
                    FunctionResponseTypes=["ReportBatchItemFailures"])
    _send(system, url, ["ok1", "fail1", "ok2", "fail2"])
    sqs = system.aws("sqs")
    dlq = sqs.get_queue_url(QueueName="esm-partial-dlq")["QueueUrl"]
    parked = wait_until(lambda: sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []), lambda ms: len(ms) == 2, timeout=60, what="the two failing messages in the DLQ")
    assert sorted(m["Body"] for m in parked) == ["fail1", "fail2"]
    got = _bodies(system, "esm-partial")
    assert got.count("ok1") == 1 and got.count("ok2") == 1 and got.count("fail1") >= 2


def _batches(system, name: str) -> list[list[str]]:
    """Each invocation's bodies in the order it got them, invocations in time order (a group's next
    batch is handed out only after the previous one's messages are deleted)."""
    logs = system.aws("logs")
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}",
                                                                 filterPattern="BATCH")
        events = sorted((e for p in pages for e in p["events"] if "BATCH " in e["message"]),
                        key=lambda e: e["timestamp"])
    except logs.exceptions.ResourceNotFoundException:   # no call has been logged yet
        return []
    return [json.loads(e["message"].split("BATCH ", 1)[1]) for e in events]


def test_a_fifo_queue_keeps_order_per_group_and_filters_drop(system):
    url, _ = _setup(system, "esm-fifo", fifo=True, BatchSize=5,
                    FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"keep": [True]}})}]})
    sqs = system.aws("sqs")
    for g in ("a", "b"):
        for i in range(10):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"g": g, "i": i, "keep": i != 3}),
                             MessageGroupId=g)
    got = wait_until(lambda: [json.loads(b) for batch in _batches(system, "esm-fifo") for b in batch],
                     lambda b: len(b) >= 18, timeout=60, what="18 kept messages")
    for g in ("a", "b"):
        assert [m["i"] for m in got if m["g"] == g] == [i for i in range(10) if i != 3], _batches(system, "esm-fifo")


def test_disabling_a_mapping_stops_polling(system):
    url, uuid = _setup(system, "esm-off")
    system.aws("lambda").update_event_source_mapping(UUID=uuid, Enabled=False)
    wait_until(lambda: [m["uuid"] for m in system.status()["mappings"]], lambda ids: uuid not in ids,
               what="the mapping to stop")
    _send(system, url, ["not now"])
    attrs = wait_until(lambda: system.aws("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"],
        lambda a: a["ApproximateNumberOfMessages"] == "1", what="the message to stay in the queue")
    assert attrs and _bodies(system, "esm-off") == []


def test_a_queue_mapped_to_runtime_alpha_one_record_per_message(system):
    """RuntimeAlpha (reserved concurrency 3) takes each message's body as its event: with BatchSize 1
    there is one invocation, so one usage record, per message, never more than 3 at once."""
    sqs, lam = system.aws("sqs"), system.aws("lambda")
    url = sqs.create_queue(QueueName="alpha-work")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="RuntimeAlpha", BatchSize=1)["UUID"]
    wait_until(lambda: [m["uuid"] for m in system.status()["mappings"]], lambda ids: uuid in ids,
               what="the dispatcher to poll the mapping")
    _send(system, url, [json.dumps({"prompt": f"message {i}"}) for i in range(60)])
    recs = wait_until(lambda: [r for r in system.usage_records() if (r.get("trigger") or "").endswith(uuid)],
                      lambda rs: len(rs) >= 60, timeout=120, interval=0.5, what="60 triggered usage records")
    system.wait_quiet(timeout=30)
    recs = [r for r in system.usage_records() if (r.get("trigger") or "").endswith(uuid)]
    assert len(recs) == 60 and all(r["status"] == "success" and r["function"] == "RuntimeAlpha" for r in recs)
    assert peak_concurrency(recs) <= 3
    shown = _mk1_status(system)
    assert "event source mappings" in shown and "alpha-work" in shown and uuid[:8] in shown, shown
    lam.delete_event_source_mapping(UUID=uuid)
    wait_until(lambda: [m["uuid"] for m in system.status()["mappings"]], lambda ids: uuid not in ids,
               what="the deleted mapping to stop")


def _mk1_status(system) -> str:
    """`mk1 status` as a user runs it (a wide terminal, so rich does not fold the table)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {**os.environ, "MK1_HOME": str(system.home), "MK1_ENDPOINT": system.url, "COLUMNS": "200"}
    out = subprocess.run([str(Path(sys.executable).parent / "mk1"), "status"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_in_a_cluster_each_message_is_processed_by_one_dispatcher(make_system):
    from helpers import Peer
    first = make_system(MK1_CLUSTER="1", MK1_LEASE_MS="2000", MK1_SQS_VISIBILITY_S="3", MK1_MAX_WAIT_MS="60000")
    peer = Peer(first, "b")
    try:
        url, uuid = _setup(first, "esm-cluster", BatchSize=5)
        wait_until(lambda: [m["uuid"] for m in peer.status()["mappings"]], lambda ids: uuid in ids,
                   what="the second dispatcher to poll the mapping too")
        bodies = [f"c{i}" for i in range(100)]
        _send(first, url, bodies)
        got = wait_until(lambda: _bodies(first, "esm-cluster"), lambda b: len(b) >= 100, timeout=90, interval=0.5,
                         what="100 bodies in the function's log")
        assert sorted(got) == sorted(bodies)                   # each exactly once, across both dispatchers
    finally:
        peer.stop()
