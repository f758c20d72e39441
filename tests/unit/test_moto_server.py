"""The embedded AWS's launcher patches moto: for speed, answering the same; and so that a DynamoDB
write and its condition are atomic, as in DynamoDB."""
import boto3
import pytest
from moto import backends, mock_aws
from moto.core import responses
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs import models as sqs_models
from moto.dynamodb.models.dynamo_type import Item
from moto.sqs.models import SQSBackend, sqs_backends
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import MotoRequestHandler

from infra import moto_server

ORIGINAL_LIST = backends.list_of_moto_modules
ORIGINAL_METHODS = responses.method_names_from_class
ORIGINAL_CHECK = SQSBackend.is_message_valid_based_on_retention_period
ORIGINAL_CLOCK = sqs_models.unix_time, sqs_models.unix_time_millis
ORIGINAL_ITEM_INIT = Item.__init__
WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
ORIGINAL_WRITES = {name: getattr(DynamoDBBackend, name) for name in WRITES}
ORIGINAL_RUN_WSGI = MotoRequestHandler.run_wsgi
ORIGINAL_SEND, ORIGINAL_ADD = SQSBackend.send_message, sqs_models.Queue.add_message
ORIGINAL_VALIDATE = SQSBackend._validate_message
ORIGINAL_DELETE = sqs_models.Queue.delete_message
ORIGINAL_RECEIVE = SQSBackend.receive_message
from moto.sqs import utils as sqs_utils   # noqa: E402
ORIGINAL_RECEIPT = sqs_utils.generate_receipt_handle
from moto.core.serialize import JSONSerializer   # noqa: E402
from moto.core.parse import BaseJSONParser   # noqa: E402
ORIGINAL_PARSE_STRUCTURE = BaseJSONParser._parse_structure


@pytest.fixture
def unpatched(monkeypatch):
    monkeypatch.setattr(backends, "list_of_moto_modules", ORIGINAL_LIST)
    monkeypatch.setattr(responses, "method_names_from_class", ORIGINAL_METHODS)
    monkeypatch.setattr(SQSBackend, "is_message_valid_based_on_retention_period", ORIGINAL_CHECK)
    monkeypatch.setattr(sqs_models, "unix_time", ORIGINAL_CLOCK[0])
    monkeypatch.setattr(sqs_models, "unix_time_millis", ORIGINAL_CLOCK[1])
    monkeypatch.setattr(Item, "__init__", ORIGINAL_ITEM_INIT)
    for name, original in ORIGINAL_WRITES.items():
        monkeypatch.setattr(DynamoDBBackend, name, original)
    monkeypatch.setattr(MotoRequestHandler, "run_wsgi", ORIGINAL_RUN_WSGI)
    monkeypatch.setattr(SQSBackend, "send_message", ORIGINAL_SEND)
    monkeypatch.setattr(SQSBackend, "_validate_message", ORIGINAL_VALIDATE)
    monkeypatch.setattr(sqs_models.Queue, "delete_message", ORIGINAL_DELETE)
    monkeypatch.setattr(SQSBackend, "receive_message", ORIGINAL_RECEIVE)
    monkeypatch.setattr(sqs_utils, "generate_receipt_handle", ORIGINAL_RECEIPT)
    monkeypatch.setattr(sqs_models, "generate_receipt_handle", ORIGINAL_RECEIPT)
    monkeypatch.setattr(sqs_models.Queue, "add_message", ORIGINAL_ADD)
    monkeypatch.setattr(BaseJSONParser, "_parse_structure", ORIGINAL_PARSE_STRUCTURE)
    if "_serialize_result" in JSONSerializer.__dict__:   # moto's own is ResponseSerializer's
        monkeypatch.delattr(JSONSerializer, "_serialize_result")
    from moto.logs.models import LogEvent
    for cls in (sqs_models.Message, LogEvent):
        if "__new__" in cls.__dict__:
            monkeypatch.delattr(cls, "__new__")


def test_every_patch_fits_the_pinned_moto_and_lists_the_same_services(unpatched):
    services = list(ORIGINAL_LIST())
    assert moto_server.apply() == {name: True for name in moto_server.PATCHES}
    assert moto_server.apply() == {name: True for name in moto_server.PATCHES}   # idempotent
    assert list(backends.list_of_moto_modules()) == services and "sqs" in services
    from moto.sqs.responses import SQSResponse
    assert responses.method_names_from_class(SQSResponse) == ORIGINAL_METHODS(SQSResponse)
    assert "receive_message" in responses.method_names_from_class(SQSResponse)


def test_sqs_reads_the_same_clock(unpatched):
    moto_server.apply()
    before = ORIGINAL_CLOCK[0]()
    now_s, now_ms = sqs_models.unix_time(), sqs_models.unix_time_millis()
    after = ORIGINAL_CLOCK[0]()
    assert before - 0.001 <= now_s <= after + 0.001 and before * 1000 - 1 <= now_ms <= after * 1000 + 1
    import datetime
    dt = datetime.datetime(2026, 1, 1)
    assert sqs_models.unix_time(dt) == ORIGINAL_CLOCK[0](dt)


def _retention_scenario() -> list[list[str]]:
    """A 60 s retention queue with one message past it: what successive receives return."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        for body in ("old", "fresh", "fresher"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue("q")
        next(m for m in queue._messages if m.body == "old").sent_timestamp -= 61_000
        seen = []
        for _ in range(3):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            seen.append(sorted(m["Body"] for m in got))
        return seen


def test_retention_is_enforced_as_moto_does(unpatched):
    expected = _retention_scenario()
    moto_server.apply()
    assert _retention_scenario() == expected
    assert not any("old" in bodies for bodies in expected) and ["fresh", "fresher"] in expected


def _dedup_scenario(sending=None) -> list:
    """Messages sent twice to FIFO queues (content-based deduplication on, off, with an explicit id)
    and to a standard queue: what each queue then holds."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        out = []
        for name, attrs, extra in (
                ("content.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}, {}),
                ("ids.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "false"},
                 {"MessageDeduplicationId": "same"}),
                ("standard", {}, {})):
            url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
            group = {"MessageGroupId": "g"} if name.endswith(".fifo") else {}
            for body in ("a", "a", "b"):
                try:
                    if sending is not None:
                        sending.append(body)
                    sqs.send_message(QueueUrl=url, MessageBody=body, **group, **extra)
                except sqs.exceptions.ClientError as e:
                    out.append(e.response["Error"]["Code"])
                finally:
                    if sending:
                        sending.pop()
            queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue(name)
            out.append(sorted(m.body for m in queue._messages))
        try:   # FIFO without content-based deduplication needs an id
            sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="ids.fifo")["QueueUrl"], MessageBody="c",
                             MessageGroupId="g")
        except sqs.exceptions.ClientError as e:
            out.append(e.response["Error"]["Code"])
        return out


def test_fifo_deduplication_is_as_moto_does_without_counting_the_queue(unpatched, monkeypatch):
    """SendMessage read ContentBasedDeduplication through the queue's whole attribute map four times,
    and each build counts every message in the queue three times: sending to a deep queue cost
    moto time in proportion to its depth (figure 4 of the benchmarks: 1,000 waiting calls)."""
    expected = _dedup_scenario()
    assert expected[:3] == [["a", "b"], ["a"], ["a", "a", "b"]]
    moto_server.apply()
    sending, built = [], []
    attributes = sqs_models.Queue.attributes
    monkeypatch.setattr(sqs_models.Queue, "attributes",
                        property(lambda q: (built.append(q) if sending else None) or attributes.fget(q)))
    assert _dedup_scenario(sending) == expected
    assert built == []


def _delete_scenario() -> list:
    """Deletes by current, old (before a visibility change), repeated and unknown receipt handles,
    one at a time and in a batch; what each answered and what the queue then holds."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        for body in "abcde":
            sqs.send_message(QueueUrl=url, MessageBody=body)
        got = {m["Body"]: m["ReceiptHandle"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                                           VisibilityTimeout=0)["Messages"]}
        again = {m["Body"]: m["ReceiptHandle"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
                 ["Messages"]}
        out = []
        for handle in (got["a"], again["b"], again["b"], "not-a-handle"):
            try:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
                out.append("deleted")
            except sqs.exceptions.ClientError as e:
                out.append(e.response["Error"]["Code"])
        batch = sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": "c", "ReceiptHandle": again["c"]}, {"Id": "x", "ReceiptHandle": "nope"},
            {"Id": "d", "ReceiptHandle": got["d"]}])
        out.append(sorted(e["Id"] for e in batch.get("Successful", [])))
        out.append(sorted((e["Id"], e["Code"]) for e in batch.get("Failed", [])))
        queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue("q")
        out.append(sorted(m.body for m in queue._messages))
        out.append(len(queue.pending_messages))
        handle = again["e"]
        out.append((len(handle), handle.isalpha() and handle.islower(), handle != got["e"]))
        return out


def test_deletes_and_receipt_handles_are_as_moto_makes_them(unpatched):
    """A delete scanned the queue twice, building each message's list of handles; a receipt handle
    was 185 calls to random.choice. At 1,000 waiting calls: O(depth) twice per delete."""
    expected = _delete_scenario()
    assert expected[:4] == ["deleted", "deleted", "deleted", "ReceiptHandleIsInvalid"]
    assert expected[4:7] == [["c", "d"], [("x", "ReceiptHandleIsInvalid")], ["e"]]
    moto_server.apply()
    assert sqs_models.Queue.delete_message is not ORIGINAL_DELETE
    assert sqs_models.generate_receipt_handle is sqs_utils.generate_receipt_handle is not ORIGINAL_RECEIPT
    assert _delete_scenario() == expected


def _receive_order_scenario() -> list:
    """A FIFO queue (three message groups, one delayed standard queue beside it): the bodies each
    receive returns, in order, as the consumer deletes what it got."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for i in range(30):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId=f"g{i % 3}",
                             MessageDeduplicationId=str(i))
        plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
        sqs.send_message(QueueUrl=plain, MessageBody="later", DelaySeconds=60)
        sqs.send_message(QueueUrl=plain, MessageBody="now")
        out = [[m["Body"] for m in sqs.receive_message(QueueUrl=plain, MaxNumberOfMessages=10).get("Messages", [])]]
        for _ in range(12):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=4).get("Messages", [])
            out.append([m["Body"] for m in got])
            if got:
                sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]}
                                                                for k, m in enumerate(got)])
        return out


def test_receives_return_what_moto_returns_in_its_order(unpatched):
    """A receive built the list of every visible message (a clock read or two each) before taking
    the first: it now reads them as it goes."""
    expected = _receive_order_scenario()
    assert expected[0] == ["now"] and sum(len(x) for x in expected[1:]) == 30
    moto_server.apply()
    assert _receive_order_scenario() == expected


def test_sqs_messages_and_log_events_are_not_kept_after_use(unpatched):
    """moto's BaseModel keeps every instance it makes in a class list, for its dashboard's data:
    every SQS message ever sent and deleted, every log line, for the life of the server (memory,
    and a garbage collector walking them all). These two are not kept there."""
    import gc
    import time
    import weakref
    from moto.logs.models import LogEvent, logs_backends
    moto_server.apply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="x")
        queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue("q")
        sent = weakref.ref(queue._messages[0])
        got = sqs.receive_message(QueueUrl=url)["Messages"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        logs = logs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        logs.create_log_group("g", {})
        logs.create_log_stream("g", "s")
        logs.put_log_events("g", "s", [{"timestamp": int(time.time() * 1000), "message": "line"}])
        assert [e.message for e in logs.groups["g"].streams["s"].events] == ["line"]
        assert sqs_models.Message.instances_tracked == [] and LogEvent.instances_tracked == []
        gc.collect()
        assert sent() is None   # deleted, so gone


def _item_scenario() -> list:
    """Items written through the API: a usage-record-like one, one just under DynamoDB's item
    limit and one just over it; what is stored, or the error."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        record = {"pk": {"S": "usage"}, "n": {"N": "1.5"}, "ok": {"BOOL": True}, "tags": {"SS": ["a", "b"]},
                  "m": {"M": {"k": {"L": [{"S": "x"}, {"N": "2"}]}}}, **{f"a{i}": {"S": "v" * i} for i in range(20)}}
        out = []
        for pk, filler in (("usage", 0), ("under", 404_000), ("over", 406_000)):
            item = {**record, "pk": {"S": pk}, "blob": {"S": "x" * filler}}
            try:
                ddb.put_item(TableName="t", Item=item)
                out.append(ddb.get_item(TableName="t", Key={"pk": {"S": pk}})["Item"] == item)
            except ddb.exceptions.ClientError as e:
                out.append(e.response["Error"])
        return out


def test_items_are_stored_and_refused_as_moto_does(unpatched):
    expected = _item_scenario()
    moto_server.apply()
    assert _item_scenario() == expected
    assert expected[:2] == [True, True] and "size" in expected[2]["Message"].lower()


def test_racing_conditional_puts_leave_one_winner_per_item(unpatched):
    """What cluster mode's leases and claims rely on: of many threads putting the same key
    `attribute_not_exists`, exactly one succeeds; conditional updates and deletes likewise."""
    import sys
    import threading
    from botocore.exceptions import ClientError
    moto_server.apply()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)     # switch threads as often as possible: the race had room to show
    try:
        with mock_aws():
            ddb = boto3.client("dynamodb", region_name="us-east-1")
            ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                             KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
            wins: dict[tuple[str, int], int] = {}
            lock = threading.Lock()

            def attempt(op: str, k: int, **kw) -> None:
                try:
                    getattr(ddb, op)(TableName="t", **kw)
                except ClientError as e:
                    assert e.response["Error"]["Code"] == "ConditionalCheckFailedException"
                    return
                with lock:
                    wins[(op, k)] = wins.get((op, k), 0) + 1

            keys = [{"pk": {"S": f"k{k}"}} for k in range(60)]
            phase = threading.Barrier(6)    # every put before any update, every update before any delete

            def racer(me: int) -> None:
                for k, key in enumerate(keys):
                    attempt("put_item", k, Item={**key, "by": {"N": str(me)}, "n": {"N": "0"}},
                            ConditionExpression="attribute_not_exists(pk)")
                phase.wait()
                for k, key in enumerate(keys):
                    attempt("update_item", k, Key=key, UpdateExpression="SET n = :one",
                            ConditionExpression="n = :zero",
                            ExpressionAttributeValues={":one": {"N": "1"}, ":zero": {"N": "0"}})
                phase.wait()
                for k, key in enumerate(keys):
                    attempt("delete_item", k, Key=key, ConditionExpression="n = :one",
                            ExpressionAttributeValues={":one": {"N": "1"}})

            threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(switch)
    assert {k: n for k, n in wins.items() if n != 1} == {}
    assert len(wins) == 3 * len(keys)      # each key: one put, one update, one delete won


def test_a_client_connection_serves_many_requests_and_bodies_are_kept_apart(unpatched):
    """Werkzeug closes every connection; patched, boto3 sends each client's requests over one
    kept-alive connection (no TCP connect and no new server thread per request), with the same
    answers: JSON and query protocols, S3 bodies in and out, HEAD, an error. A chunked request
    body, or a client asking for it, still closes the connection."""
    import http.client
    import threading
    from werkzeug.serving import make_server
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    moto_server.apply()
    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True,
                         request_handler=MotoRequestHandler)
    accepted = []
    get_request = server.get_request
    server.get_request = lambda: accepted.append(1) or get_request()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kw = dict(endpoint_url=f"http://127.0.0.1:{server.server_port}", region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        sqs, ddb, s3 = boto3.client("sqs", **kw), boto3.client("dynamodb", **kw), boto3.client("s3", **kw)
        url = sqs.create_queue(QueueName="keep-alive")["QueueUrl"]
        ddb.create_table(TableName="keep-alive", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        s3.create_bucket(Bucket="keep-alive")
        blob = bytes(range(256)) * 400
        for i in range(10):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
            ddb.put_item(TableName="keep-alive", Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})
            s3.put_object(Bucket="keep-alive", Key=f"o{i}", Body=blob[i:])
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(m["Body"] for m in got) == sorted(f"m{i}" for i in range(10))
        assert ddb.get_item(TableName="keep-alive", Key={"pk": {"S": "k7"}})["Item"]["n"] == {"N": "7"}
        assert s3.get_object(Bucket="keep-alive", Key="o3")["Body"].read() == blob[3:]
        assert s3.head_object(Bucket="keep-alive", Key="o3")["ContentLength"] == len(blob) - 3
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="keep-alive", Key="missing")
        assert s3.list_objects_v2(Bucket="keep-alive")["KeyCount"] == 10
        assert len(accepted) == 3        # one connection per client

        conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
        conn.request("PUT", "/keep-alive/chunked", body=iter([b"ab", b"cd"]), encode_chunked=True,
                     headers={"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and resp.getheader("Connection") == "close"
        assert s3.get_object(Bucket="keep-alive", Key="chunked")["Body"].read() == b"abcd"
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
        conn.request("GET", "/keep-alive/o1", headers={"Connection": "close", "Authorization":
                     "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request"})
        resp = conn.getresponse()
        assert resp.read() == blob[1:] and resp.getheader("Connection") == "close"
    finally:
        server.shutdown()
        server.server_close()


def test_an_app_error_is_a_500_that_closes_the_connection(unpatched):
    import http.client
    import threading
    from werkzeug.serving import make_server
    moto_server.apply()

    def broken(environ, start_response):
        raise RuntimeError("boom")

    server = make_server("127.0.0.1", 0, broken, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
        conn.request("POST", "/", body=b"{}")
        resp = conn.getresponse()
        assert resp.status == 500 and resp.read() == b"Internal Server Error"
        assert resp.getheader("Connection") == "close"
    finally:
        server.shutdown()
        server.server_close()


def test_listing_every_version_does_not_copy_the_logs_backend():
    """ListFunctions(FunctionVersion=ALL), which the dispatcher sends every second, deep-copies each
    function (moto's LambdaStorage.all); unpatched, each copy copied the region's whole CloudWatch Logs
    backend with every log event in it (a full test run: 7.4 M LogEvent objects, 23 GB, the OOM killer).
    The listing is the same, and its cost no longer grows with the log events."""
    import time
    from moto.logs.models import logs_backends
    assert moto_server.apply()["lambda-copies-share-backends"]
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name="us-east-1")
        for i in range(5):
            lam.create_function(FunctionName=f"f{i}", Runtime="python3.11", Role=role, Handler="h.h",
                                Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
        logs = logs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        logs.create_log_group("/aws/lambda/f0", {})
        logs.create_log_stream("/aws/lambda/f0", "s")
        now = int(time.time() * 1000)
        logs.put_log_events("/aws/lambda/f0", "s", [{"timestamp": now, "message": f"line {i}"} for i in range(10000)])
        from moto.awslambda.models import lambda_backends
        copies = list(lambda_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]._lambdas.all())
        assert copies and all(c.logs_backend is logs for c in copies)
        names = {f["FunctionName"] for f in lam.list_functions(FunctionVersion="ALL")["Functions"]}
        assert names == {f"f{i}" for i in range(5)}


def _json_protocol_scenario() -> list:
    """The JSON-protocol answers mk1's queues and a user's tools get, through moto's server app
    (SQS, DynamoDB, CloudWatch Logs, Secrets Manager): status, content type and body of each, with
    what moto draws at random or from the clock (ids, receipt handles, timestamps) numbered by first
    appearance. Batches with failed entries, message and system attributes (a binary one), FIFO
    sequence numbers, maps, empty answers, errors."""
    import io
    import json
    import re
    import time
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    app = DomainDispatcherApplication(create_backend_app)
    seen: dict = {}
    drawn = {"ReceiptHandle", "MessageId", "SequenceNumber", "VersionId", "ARN", "TableId", "LatestStreamLabel",
             "LatestStreamArn", "nextForwardToken", "nextBackwardToken", "nextSequenceToken", "uploadSequenceToken"}
    clock = {"SentTimestamp", "ApproximateFirstReceiveTimestamp", "CreatedTimestamp", "LastModifiedTimestamp",
             "CreationDateTime", "creationTime", "ingestionTime", "CreatedDate", "timestamp"}

    def normal(value, key=""):
        if isinstance(value, dict):
            return {k: normal(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [normal(v, key) for v in value]
        if key in clock:
            return f"<{key}>"
        if key in drawn:
            return seen.setdefault((key, str(value)), f"<{key} {len([k for k in seen if k[0] == key])}>")
        return value

    def call(service, target, body, version="1.0"):
        raw = json.dumps(body).encode()
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "4566", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO(raw), "wsgi.errors": io.StringIO(), "CONTENT_LENGTH": str(len(raw)),
                   "CONTENT_TYPE": f"application/x-amz-json-{version}", "HTTP_HOST": "127.0.0.1:4566",
                   "HTTP_X_AMZ_TARGET": target, "HTTP_AUTHORIZATION":
                   f"AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/{service}/aws4_request, "
                   "SignedHeaders=host, Signature=0"}
        started = {}
        answer = b"".join(app(environ, lambda status, headers, exc=None: started.update(s=status, h=dict(headers))))
        parsed = json.loads(answer) if answer.strip() else None
        out = [started["s"], started["h"].get("Content-Type"), normal(parsed)]
        out_text = json.dumps(out)   # with its keys in order
        return parsed, re.sub(r"\\s+", " ", out_text)

    answers = []
    with mock_aws():
        sqs = lambda action, body: call("sqs", f"AmazonSQS.{action}", body)   # noqa: E731
        fifo = sqs("CreateQueue", {"QueueName": "j.fifo", "Attributes": {"FifoQueue": "true"},
                                   "tags": {"team": "mk1"}})[0]["QueueUrl"]
        plain = sqs("CreateQueue", {"QueueName": "j-plain"})[0]["QueueUrl"]
        answers.append(sqs("ListQueues", {})[1])
        answers.append(sqs("ListQueueTags", {"QueueUrl": fifo})[1])
        answers.append(sqs("GetQueueAttributes", {"QueueUrl": fifo, "AttributeNames": ["All"]})[1])
        answers.append(sqs("SendMessageBatch", {"QueueUrl": fifo, "Entries": [
            {"Id": f"e{i}", "MessageBody": f"m{i}", "MessageGroupId": "g", "MessageDeduplicationId": f"d{i}"}
            for i in range(4)]})[1])
        answers.append(sqs("SendMessageBatch", {"QueueUrl": plain, "Entries": [
            {"Id": "s", "MessageBody": "with attributes", "MessageAttributes": {
                "who": {"DataType": "String", "StringValue": "mk1"},
                "raw": {"DataType": "Binary", "BinaryValue": "AAEC"}}},
            {"Id": "t", "MessageBody": "plain", "DelaySeconds": 0}]})[1])
        answers.append(sqs("SendMessageBatch", {"QueueUrl": plain, "Entries": [{"Id": "x", "MessageBody": "a"},
                                                                             {"Id": "x", "MessageBody": "b"}]})[1])
        got, text = sqs("ReceiveMessage", {"QueueUrl": fifo, "MaxNumberOfMessages": 3,
                                           "MessageSystemAttributeNames": ["All"], "VisibilityTimeout": 30})
        answers.append(text)
        answers.append(sqs("ReceiveMessage", {"QueueUrl": plain, "MaxNumberOfMessages": 10,
                                              "MessageAttributeNames": ["All"], "AttributeNames": ["SenderId"]})[1])
        handles = [m["ReceiptHandle"] for m in got["Messages"]]
        answers.append(sqs("ChangeMessageVisibilityBatch", {"QueueUrl": fifo, "Entries": [
            {"Id": "ok", "ReceiptHandle": handles[0], "VisibilityTimeout": 0},
            {"Id": "bad", "ReceiptHandle": "nope", "VisibilityTimeout": 0}]})[1])
        answers.append(sqs("DeleteMessageBatch", {"QueueUrl": fifo, "Entries": [
            {"Id": f"h{i}", "ReceiptHandle": h} for i, h in enumerate(handles)] + [
            {"Id": "gone", "ReceiptHandle": "not-a-handle"}]})[1])
        answers.append(sqs("ReceiveMessage", {"QueueUrl": fifo, "MaxNumberOfMessages": 10})[1])
        answers.append(sqs("ReceiveMessage", {"QueueUrl": fifo, "MaxNumberOfMessages": 10})[1])
        answers.append(sqs("ReceiveMessage", {"QueueUrl": fifo + "-missing"})[1])
        answers.append(sqs("DeleteMessageBatch", {"QueueUrl": fifo, "Entries": []})[1])

        ddb = lambda action, body: call("dynamodb", f"DynamoDB_20120810.{action}", body)   # noqa: E731
        answers.append(ddb("CreateTable", {"TableName": "j", "BillingMode": "PAY_PER_REQUEST",
                                           "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                           "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})[1])
        answers.append(ddb("BatchWriteItem", {"RequestItems": {"j": [
            {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "b": {"B": "AAE="},
                                     "l": {"L": [{"S": "x"}, {"BOOL": True}, {"NULL": True}]}}}}
            for i in range(3)]}})[1])
        answers.append(ddb("GetItem", {"TableName": "j", "Key": {"pk": {"S": "k1"}}})[1])
        answers.append(ddb("Scan", {"TableName": "j"})[1])
        answers.append(ddb("PutItem", {"TableName": "j", "Item": {"pk": {"S": "k1"}},
                                       "ConditionExpression": "attribute_not_exists(pk)"})[1])

        logs = lambda action, body: call("logs", f"Logs_20140328.{action}", body, "1.1")   # noqa: E731
        answers.append(logs("CreateLogGroup", {"logGroupName": "/j"})[1])
        answers.append(logs("CreateLogStream", {"logGroupName": "/j", "logStreamName": "s"})[1])
        answers.append(logs("PutLogEvents", {"logGroupName": "/j", "logStreamName": "s", "logEvents": [
            {"timestamp": int(time.time() * 1000) + i, "message": f"line {i}"} for i in range(3)]})[1])
        answers.append(logs("GetLogEvents", {"logGroupName": "/j", "logStreamName": "s", "startFromHead": True})[1])
        answers.append(logs("DescribeLogGroups", {})[1])

        secrets = lambda action, body: call("secretsmanager", f"secretsmanager.{action}", body, "1.1")   # noqa: E731
        answers.append(secrets("CreateSecret", {"Name": "j", "SecretString": "s3cret"})[1])
        answers.append(secrets("GetSecretValue", {"SecretId": "j"})[1])
        answers.append(secrets("GetSecretValue", {"SecretId": "missing"})[1])
    return answers


def test_json_protocol_answers_are_as_moto_serializes_them(unpatched):
    """moto's JSON serializer walks every answer through its service model, asking six alias
    providers which key of the result holds each member: ~1 ms of a ten-message receive's ~2.4 ms
    of CPU. Answers of plain data are built directly, with the keys moto would pick; anything else
    (objects, timestamps, blobs) still goes through moto's walk. Every answer here is the same,
    byte for byte once drawn values are numbered, keys in the same order."""
    expected = _json_protocol_scenario()
    assert '"Failed": [{"Id": "bad", "SenderFault": true' in expected[8]
    assert '"Code": "ReceiptHandleIsInvalid"' in expected[9] and "#QueueDoesNotExist" in expected[12]
    assert '"Messages"' in expected[6] and '"SequenceNumber"' in expected[6] and '"BinaryValue"' in expected[7]
    assert '"message": "line 0"' in expected[22] and '"SecretString": "s3cret"' in expected[25]
    moto_server.apply()
    assert "_serialize_result" in JSONSerializer.__dict__
    assert _json_protocol_scenario() == expected


def _parsed_requests() -> list:
    """JSON requests as moto's parser hands them to its services (key order included): DynamoDB items
    with every kind of AttributeValue (nested maps and lists, sets, NULL, BOOL, a blob), an object
    with two of its members set, nulls, a key no member has; SQS batches with attributes."""
    import json
    from moto.core.parse import JSONParser
    from moto.core.responses import get_service_model
    item = {"pk": {"S": "k"}, "n": {"N": "1.5"}, "b": {"B": "AAE="}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1"]},
            "nul": {"NULL": True}, "yes": {"BOOL": False}, "odd": {"S": "x", "N": None}, "two": {"N": "2", "S": "y"},
            "m": {"M": {"inner": {"L": [{"S": "deep"}, {"M": {}}, {"BOOL": True}]}}}, "unknown": {"Q": "?"}}
    cases = [("dynamodb", "BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": item}},
                                                                   {"DeleteRequest": {"Key": {"pk": {"S": "k"}}}}]},
                                             "ReturnConsumedCapacity": "TOTAL", "Extra": 1}),
             ("dynamodb", "PutItem", {"Item": item, "TableName": "t", "ConditionExpression": "attribute_not_exists(pk)",
                                      "ExpressionAttributeValues": {":v": {"S": "v"}}, "ReturnValues": None}),
             ("dynamodb", "Query", {"TableName": "t", "KeyConditionExpression": "pk = :p", "Limit": 5,
                                    "ExclusiveStartKey": {"pk": {"S": "k"}}, "ScanIndexForward": False}),
             ("sqs", "SendMessageBatch", {"QueueUrl": "q", "Entries": [
                 {"MessageBody": "b", "Id": "1", "DelaySeconds": 0, "MessageAttributes": {
                     "raw": {"DataType": "Binary", "BinaryValue": "AAEC"}, "s": {"StringValue": "x", "DataType": "String"}}},
                 {"Id": "2", "MessageBody": "c", "MessageGroupId": None}]}),
             ("sqs", "ReceiveMessage", {"QueueUrl": "q", "MaxNumberOfMessages": 10, "AttributeNames": ["All"]})]
    out = []
    for service, operation, body in cases:
        parser = JSONParser(get_service_model(service).operation_model(operation))
        parsed = parser.parse({"method": "POST", "values": {}, "headers": {}, "body": json.dumps(body).encode(),
                               "url_path": "/", "url_params": {}})
        out.append(repr(parsed))   # repr: types and key order, not only equality
    return out


def test_json_requests_are_parsed_as_moto_parses_them(unpatched):
    """moto's JSON parser looks every member of a shape up in each object (ten per DynamoDB
    AttributeValue); patched it looks the object's own keys up in the shape, with the same result:
    the same members, in the shape's order, of the same types."""
    expected = _parsed_requests()
    assert "'NULL': True" in expected[0] and "'unknown'" in expected[0] and "'Extra'" not in expected[0]
    assert "b'\\x00\\x01'" in expected[0] and "b'\\x00\\x01\\x02'" in expected[3]
    assert "'two': {'S': 'y', 'N': '2'}" in expected[0]   # the shape's order, not the request's
    moto_server.apply()
    assert BaseJSONParser._parse_structure is not ORIGINAL_PARSE_STRUCTURE
    assert _parsed_requests() == expected
