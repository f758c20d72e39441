"""The lean JSON-protocol client (infra/json_client.py) against the real embedded AWS (moto server):
the same answers and the same exceptions as the boto3 client it stands in for, for the requests
mk1's writers make."""
from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError

from helpers import free_port
from infra import aws
from infra.embedded import EmbeddedAWS
from my_mk1_homework import settings as settings_mod


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    settings = settings_mod.load({"MK1_AWS_PORT": str(free_port()), "AWS_DEFAULT_REGION": "us-east-1",
                                  "MK1_HOME": str(tmp_path_factory.mktemp("home"))})
    moto = EmbeddedAWS(settings).start()
    try:
        yield settings
    finally:
        moto.stop()


def _strip(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def test_sqs_send_receive_delete_as_boto3(settings):
    boto, lean = aws.client(settings, "sqs"), aws.json_client(settings, "sqs")
    url = boto.create_queue(QueueName="lean-q")["QueueUrl"]
    sent = lean.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)])
    assert [s["Id"] for s in sent["Successful"]] == ["0", "1", "2"] and not sent.get("Failed")
    assert sent["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = lean.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30,
                               AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert sorted(m["Body"] for m in got) == ["m0", "m1", "m2"]
    assert all(m["Attributes"] == {"ApproximateReceiveCount": "1"} for m in got)
    deleted = lean.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                              for i, m in enumerate(got)])
    assert len(deleted["Successful"]) == 3
    boto.send_message(QueueUrl=url, MessageBody="via boto3")
    # The same message, read by both clients in turn, is the same document.
    a = boto.receive_message(QueueUrl=url, VisibilityTimeout=0, AttributeNames=["All"])["Messages"][0]
    b = lean.receive_message(QueueUrl=url, VisibilityTimeout=0, AttributeNames=["All"])["Messages"][0]
    keep = ("MessageId", "Body", "MD5OfBody")
    assert {k: a[k] for k in keep} == {k: b[k] for k in keep}
    assert lean.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"] \
        == boto.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]


def test_dynamodb_conditional_writes_raise_as_boto3(settings):
    boto, lean = aws.client(settings, "dynamodb"), aws.json_client(settings, "dynamodb")
    boto.create_table(TableName="lean-t", BillingMode="PAY_PER_REQUEST",
                      KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                      AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])
    item = {"k": {"S": "a"}, "n": {"N": "1.5"}, "none": {"NULL": True}, "flag": {"BOOL": True}}
    lean.put_item(TableName="lean-t", Item=item, ConditionExpression="attribute_not_exists(k)")
    with pytest.raises(lean.exceptions.ConditionalCheckFailedException) as caught:
        lean.put_item(TableName="lean-t", Item=item, ConditionExpression="attribute_not_exists(k)")
    assert isinstance(caught.value, ClientError)
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert _strip(lean.get_item(TableName="lean-t", Key={"k": {"S": "a"}}, ConsistentRead=True)) \
        == _strip(boto.get_item(TableName="lean-t", Key={"k": {"S": "a"}}, ConsistentRead=True))
    rows = [{"PutRequest": {"Item": {"k": {"S": f"b{i}"}, "n": {"N": str(i)}}}} for i in range(25)]
    assert not lean.batch_write_item(RequestItems={"lean-t": rows}).get("UnprocessedItems")
    assert boto.scan(TableName="lean-t", Select="COUNT")["Count"] == 26
    with pytest.raises(lean.exceptions.ResourceNotFoundException):
        lean.put_item(TableName="no-such-table", Item=item)


def test_logs_and_its_modeled_errors(settings):
    boto, lean = aws.client(settings, "logs"), aws.json_client(settings, "logs")
    with pytest.raises(lean.exceptions.ResourceNotFoundException):
        lean.put_log_events(logGroupName="/lean", logStreamName="s", logEvents=[{"timestamp": 1, "message": "x"}])
    lean.create_log_group(logGroupName="/lean")
    with pytest.raises(lean.exceptions.ResourceAlreadyExistsException):
        lean.create_log_group(logGroupName="/lean")
    lean.create_log_stream(logGroupName="/lean", logStreamName="s")
    now_ms = int(time.time() * 1000)
    lean.put_log_events(logGroupName="/lean", logStreamName="s",
                        logEvents=[{"timestamp": now_ms + i, "message": f"line {i}"} for i in range(3)])
    events = boto.get_log_events(logGroupName="/lean", logStreamName="s", startFromHead=True)["events"]
    assert [e["message"] for e in events] == ["line 0", "line 1", "line 2"]


def test_a_kept_connection_the_endpoint_dropped_is_made_again(settings):
    lean = aws.json_client(settings, "sqs")
    url = lean.create_queue(QueueName="lean-drop")["QueueUrl"]
    conn = lean._connection()
    conn.sock.close()   # as if the endpoint had closed it while idle
    assert lean.get_queue_url(QueueName="lean-drop")["QueueUrl"] == url
    assert lean._connection() is not conn


def test_threads_each_keep_their_own_connection(settings):
    lean = aws.json_client(settings, "sqs")
    url = lean.create_queue(QueueName="lean-threads")["QueueUrl"]
    conns, errors = [], []

    def work(i: int) -> None:
        try:
            for j in range(10):
                lean.send_message(QueueUrl=url, MessageBody=f"{i}-{j}")
            conns.append(lean._connection())
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len({id(c) for c in conns}) == 4
    attrs = lean.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "40"


def test_only_json_protocol_services():
    import boto3
    s3 = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t").client("s3")
    from infra.json_client import JsonClient
    with pytest.raises(ValueError, match="not JSON"):
        JsonClient(s3, None)


def test_an_endpoint_that_is_down_raises_botocores_error(settings):
    from botocore.exceptions import BotoCoreError, EndpointConnectionError
    down = settings.with_overrides(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    lean, boto = aws.json_client(down, "sqs", retries=0), aws.client(down, "sqs", retries=0)
    with pytest.raises(EndpointConnectionError) as ours:
        lean.get_queue_url(QueueName="q")
    with pytest.raises(EndpointConnectionError) as theirs:
        boto.get_queue_url(QueueName="q")
    assert isinstance(ours.value, BotoCoreError) and str(ours.value) == str(theirs.value)
