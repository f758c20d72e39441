"""The background writers' clients skip botocore's parameter validation (infra/aws.py): here their
requests go through validating clients instead (botocore's Stubber answers without a network),
so a request of a wrong shape fails a test rather than only a real AWS endpoint."""
import threading

import boto3
import pytest
from botocore.stub import ANY, Stubber

from chalicelib.clock import FakeClock
from chalicelib.admit.queues import WorkQueue
from chalicelib.record.recorder import Recorder

QUEUE = "http://127.0.0.1:4566/123456789012/mk1-RuntimeAlpha-queue"
RECORD = {"request_id": "6cc31263-913a-49e3-ae10-ab110e00fcbd", "user": "admin", "function": "RuntimeAlpha",
          "invocation_type": "RequestResponse", "accepted": "2026-12-01T12:00:00.000Z",
          "start": "2026-12-01T12:00:00.000Z", "end": "2026-12-01T12:00:00.051Z", "duration_ms": 50.671,
          "billed_ms": 51, "init_ms": None, "wait_ms": 0.0, "memory_mb": 128, "max_memory_used_mb": 30.5,
          "status": "success", "error_type": None, "container_id": "RuntimeAlpha-0001-08134f",
          "backend": "process", "attempt": 0}


def _validating(service: str):
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y",
                          endpoint_url="http://127.0.0.1:9")
    assert client.meta.config.parameter_validation
    return client


@pytest.fixture
def stubbed():
    made = []

    def make(service: str):
        client = _validating(service)
        stub = Stubber(client)
        stub.activate()
        made.append(stub)
        return client, stub
    yield make
    for stub in made:
        stub.deactivate()


def test_usage_records_and_log_lines_are_valid_requests(tmp_path, stubbed):
    ddb, ddb_stub = stubbed("dynamodb")
    logs, logs_stub = stubbed("logs")
    ddb_stub.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": ANY})
    logs_stub.add_response("create_log_stream", {}, {"logGroupName": ANY, "logStreamName": ANY})
    logs_stub.add_response("put_log_events", {}, {"logGroupName": ANY, "logStreamName": ANY, "logEvents": ANY})
    rec = Recorder(ddb, logs, tmp_path / "usage.log", FakeClock(), batch_s=0.0)
    try:
        rec.log("/aws/lambda/RuntimeAlpha", "[$LATEST]RuntimeAlpha-0001-08134f", ["START", "a line", "END", "REPORT"])
        written = threading.Event()
        rec.usage(dict(RECORD), written)
        assert written.wait(10), rec.health()
        assert rec.drain(10) and rec.failures == 0, rec.health()
    finally:
        rec.drain(1)
    ddb_stub.assert_no_pending_responses()
    logs_stub.assert_no_pending_responses()


def test_queue_sends_receives_deletes_and_dlq_are_valid_requests(stubbed):
    sqs, stub = stubbed("sqs")
    stub.add_response("send_message_batch", {"Successful": [], "Failed": []}, {"QueueUrl": QUEUE, "Entries": ANY})
    stub.add_response("receive_message", {"Messages": [
        {"MessageId": "m1", "ReceiptHandle": "r1", "Body": '{"request_id": "a", "kind": "sync"}'}]},
        {"QueueUrl": QUEUE, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0, "VisibilityTimeout": 30,
         "AttributeNames": ANY})
    stub.add_response("delete_message_batch", {"Successful": [], "Failed": []}, {"QueueUrl": QUEUE, "Entries": ANY})
    stub.add_response("send_message", {"MessageId": "d1"}, {"QueueUrl": QUEUE + "-dlq", "MessageBody": ANY})
    stub.add_response("get_queue_attributes", {"Attributes": {"ApproximateNumberOfMessages": "0"}},
                      {"QueueUrl": QUEUE, "AttributeNames": ANY})
    sent = threading.Event()
    sqs.meta.events.register("after-call.sqs.SendMessageBatch", lambda **kw: sent.set())
    q = WorkQueue(sqs, QUEUE, QUEUE + "-dlq")
    failed = []
    q.send_ordered({"request_id": "a", "kind": "sync"}, on_fail=failed.append)
    assert sent.wait(10)           # by the sender thread: the stubbed answers go in call order
    assert q.receive(10, 0) == [({"request_id": "a", "kind": "sync"}, "r1")]
    q.delete_later("r1")
    q.flush()                      # the deleter sends what it holds, then stops
    q.to_dlq({"request_id": "a"})
    assert q.depth() == {"visible": 0}
    assert not failed, failed
    stub.assert_no_pending_responses()


def test_the_stubbed_clients_do_validate(stubbed):
    from botocore.exceptions import ParamValidationError
    sqs, stub = stubbed("sqs")
    stub.add_response("send_message_batch", {"Successful": [], "Failed": []})
    with pytest.raises(ParamValidationError):
        sqs.send_message_batch(QueueUrl=QUEUE, Entries=[{"Id": 1, "MessageBody": "x"}])


class _CountingLogs:
    """A CloudWatch Logs stand-in that counts PutLogEvents (the shapes are checked above)."""

    class exceptions:
        ResourceNotFoundException = ResourceAlreadyExistsException = type("E", (Exception,), {})

    def __init__(self):
        self.events = []

    def create_log_stream(self, **kw):
        pass

    def put_log_events(self, logEvents, **kw):
        self.events += logEvents


def test_log_lines_wait_for_their_own_longer_batch_and_drain_flushes_them(tmp_path, stubbed):
    from chalicelib.clock import SystemClock
    ddb, ddb_stub = stubbed("dynamodb")
    ddb_stub.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": ANY})
    logs = _CountingLogs()
    rec = Recorder(ddb, logs, tmp_path / "usage.log", SystemClock(), batch_s=0.01, logs_batch_s=30.0)
    rec.log("/aws/lambda/RuntimeAlpha", "[$LATEST]c1", ["START", "END", "REPORT"])
    written = threading.Event()
    rec.usage(dict(RECORD), written)
    assert written.wait(10)              # the usage record went out on its own short batch ...
    assert logs.events == []             # ... the log lines wait for theirs
    assert rec.drain(10)
    assert [e["message"] for e in logs.events] == ["START", "END", "REPORT"]
