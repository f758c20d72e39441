"""Event calls' configured retries and where their outcomes go, in AWS's shapes.

https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-configuring.html (MaximumRetryAttempts,
MaximumEventAgeInSeconds, destinations) and
https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html (the invocation
record: version, timestamp, requestContext {requestId, functionArn, condition, approximateInvokeCount},
requestPayload, responseContext {statusCode, executedVersion, functionError}, responsePayload; the
dead-letter queue gets the event with RequestID, ErrorCode and ErrorMessage attributes).
"""
import io
import json
import zipfile

import pytest

from helpers import wait_until

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)

CODE = '''
def handler(event, context):
    if event.get("fail"):
        raise ValueError("it failed")
    return {"echo": event}
'''


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", CODE)
    return buf.getvalue()


def _function(system, name: str, **kw) -> str:
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    return system.aws("lambda").create_function(FunctionName=name, Runtime="python3.11", Role=role,
                                                Handler="app.handler", Code={"ZipFile": _zip()}, **kw)["FunctionArn"]


def _read(system, name: str, **want) -> None:
    """Until the dispatcher (not only the Lambda API) has read the function's event-invoke config."""
    wait_until(lambda: (system.status()["functions"].get(name) or {}).get("event_invoke", {}),
               lambda got: all(got.get(k) == v for k, v in want.items()), what=f"{name}'s config {want}")


def _queue(system, name: str) -> tuple[str, str]:
    sqs = system.aws("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _messages(system, url: str, n: int) -> list[dict]:
    sqs, got = system.aws("sqs"), []

    def more():
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     MessageAttributeNames=["All"]).get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return got
    return wait_until(more, lambda ms: len(ms) >= n, timeout=30, interval=0.1, what=f"{n} messages in {url}")


def test_no_retries_and_an_on_failure_queue_get_exactly_one_aws_record(system):
    arn = _function(system, "fails")
    url, q_arn = _queue(system, "fails-on-failure")
    system.aws("lambda").put_function_event_invoke_config(
        FunctionName="fails", MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": q_arn}})
    admin = system.lambda_client("admin")
    _read(system, "fails", max_retries=0, on_failure=q_arn)
    r = admin.invoke(FunctionName="fails", InvocationType="Event", Payload=b'{"fail": true}')
    rid = r["ResponseMetadata"]["RequestId"]
    [m] = _messages(system, url, 1)
    record = json.loads(m["Body"])
    assert set(record) == {"version", "timestamp", "requestContext", "requestPayload", "responseContext",
                           "responsePayload"}
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"] == {"requestId": rid, "functionArn": f"{arn}:$LATEST",
                                        "condition": "RetriesExhausted", "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"fail": True}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "ValueError"
    system.wait_quiet(timeout=30)   # no retry came after it (MaximumRetryAttempts=0)
    runs = [x for x in system.usage_records() if x["request_id"] == rid]
    assert len(runs) == 1 and runs[0]["status"] == "function_error"
    assert not system.aws("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")


def test_on_success_to_a_queue_and_to_another_function(system):
    _function(system, "works")
    _function(system, "sink")
    url, q_arn = _queue(system, "works-on-success")
    lam = system.aws("lambda")
    lam.put_function_event_invoke_config(FunctionName="works",
                                         DestinationConfig={"OnSuccess": {"Destination": q_arn}})
    admin = system.lambda_client("admin")
    _read(system, "works", on_success=q_arn)
    admin.invoke(FunctionName="works", InvocationType="Event", Payload=b'{"n": 1}')
    [m] = _messages(system, url, 1)
    record = json.loads(m["Body"])
    assert record["requestContext"]["condition"] == "Success" and record["responsePayload"] == {"echo": {"n": 1}}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}

    # update: the destination becomes the function "sink", which gets the record as its event
    sink_arn = lam.get_function(FunctionName="sink")["Configuration"]["FunctionArn"]
    lam.update_function_event_invoke_config(FunctionName="works",
                                            DestinationConfig={"OnSuccess": {"Destination": sink_arn}})
    _read(system, "works", on_success=sink_arn)
    r = admin.invoke(FunctionName="works", InvocationType="Event", Payload=b'{"n": 2}')
    rid = r["ResponseMetadata"]["RequestId"]
    sink_runs = wait_until(lambda: [x for x in system.usage_records() if x["function"] == "sink"],
                           lambda rs: rs, timeout=30, what="the destination function's run")
    assert sink_runs[0]["invocation_type"] == "Event" and sink_runs[0]["status"] == "success"
    assert sink_runs[0]["user"] == "admin" and rid != sink_runs[0]["request_id"]


def test_the_functions_dead_letter_queue_gets_the_event(system):
    url, q_arn = _queue(system, "dlq-target")
    _function(system, "dead", DeadLetterConfig={"TargetArn": q_arn})
    system.aws("lambda").put_function_event_invoke_config(FunctionName="dead", MaximumRetryAttempts=0)
    admin = system.lambda_client("admin")
    _read(system, "dead", max_retries=0, dead_letter=q_arn)
    r = admin.invoke(FunctionName="dead", InvocationType="Event", Payload=b'{"fail": true, "k": "v"}')
    [m] = _messages(system, url, 1)
    assert json.loads(m["Body"]) == {"fail": True, "k": "v"}
    assert m["MessageAttributes"]["RequestID"]["StringValue"] == r["ResponseMetadata"]["RequestId"]
    assert "it failed" in m["MessageAttributes"]["ErrorMessage"]["StringValue"]
