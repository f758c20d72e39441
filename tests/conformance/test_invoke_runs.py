"""Invoke's answers from a running function: function errors, platform errors, limits, logs, context.

Sources: https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html (X-Amz-Function-Error,
X-Amz-Executed-Version, LogResult: the last 4 KB of the log, ClientContext: base64 JSON, up to 3,583
bytes, sync calls only); https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html (the
response limit; Lambda-Runtime-Client-Context); https://docs.aws.amazon.com/lambda/latest/dg/runtimes-modify.html
(AWS_LAMBDA_EXEC_WRAPPER); https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html (START,
END, REPORT); AWS-recorded payloads in LocalStack's test_lambda.snapshot.json
(test_lambda_too_large_response, test_lambda_runtime_exit, test_lambda_handler_exit,
test_lambda_runtime_wrapper_not_found, test_reserved_concurrency).
"""
import base64
import json
import re
import threading

import pytest

from helpers import wait_until
from lambda_http import b64json
from my_mk1_homework.run_header import run_of

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)


def _invoke(client, name, event=None, **kw):
    r = client.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kw)
    return r, json.loads(r["Payload"].read())


def test_a_handler_exception_is_unhandled_with_lambdas_fields(fn, admin):
    name = fn("conf-errors")
    r, body = _invoke(admin, name, {"do": "raise"})
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled" and r["ExecutedVersion"] == "$LATEST"
    assert body["errorMessage"] == "it failed" and body["errorType"] == "ValueError"
    assert set(body) >= {"errorMessage", "errorType", "requestId", "stackTrace"}


def test_a_response_over_6_mb_keeps_the_runtime_warm(fn, admin):
    name = fn("conf-big")
    r, body = _invoke(admin, name, {"do": "big"})
    assert r["FunctionError"] == "Unhandled"
    assert list(body.items()) == [("errorMessage", "Response payload size exceeded maximum allowed payload size "
                                                   "(6291556 bytes)."), ("errorType", "Function.ResponseSizeTooLarge")]
    first = run_of(r["ResponseMetadata"]["HTTPHeaders"])
    r2, body2 = _invoke(admin, name, {})
    second = run_of(r2["ResponseMetadata"]["HTTPHeaders"])
    assert "FunctionError" not in r2 and second["cold"] == "false" and second["container"] == first["container"]


def test_a_runtime_that_exits_without_a_reason(fn, admin):
    name = fn("conf-exit")
    r, body = _invoke(admin, name, {"do": "exit", "code": 0})
    rid = r["ResponseMetadata"]["RequestId"]
    assert r["FunctionError"] == "Unhandled"
    assert list(body.items()) == [("errorType", "Runtime.ExitError"),
                                  ("errorMessage", f"RequestId: {rid} Error: Runtime exited without providing a reason")]
    r, body = _invoke(admin, name, {"do": "exit", "code": 3})
    assert body == {"errorType": "Runtime.ExitError", "errorMessage":
                    f"RequestId: {r['ResponseMetadata']['RequestId']} Error: Runtime exited with error: exit status 3"}


def test_report_lines_to_the_byte(fn, admin):
    name = fn("conf-logs")
    r, _ = _invoke(admin, name, {}, LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    rid = r["ResponseMetadata"]["RequestId"]
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST" and f"END RequestId: {rid}" in lines
    assert re.fullmatch(rf"REPORT RequestId: {rid}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
                        r"Memory Size: 256 MB\tMax Memory Used: \d+ MB\t(Init Duration: \d+\.\d\d ms\t)?", lines[-1])


def test_client_context_reaches_the_handler(fn, admin):
    name = fn("conf-context")
    _, body = _invoke(admin, name, {}, ClientContext=b64json({"custom": {"tenant": "t1"}, "env": {}, "client": {}}))
    assert body["custom"] == {"tenant": "t1"}
    _, body = _invoke(admin, name, {})
    assert body["custom"] is None


def test_the_exec_wrapper_starts_the_runtime_and_a_missing_one_fails_as_on_aws(fn, admin):
    wrapped = fn("conf-wrapped", Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrapper.sh"}})
    r, body = _invoke(admin, wrapped, {})
    assert "FunctionError" not in r and body["wrapped"] == "yes"
    missing = fn("conf-no-wrapper", Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/idontexist.sh"}})
    r, body = _invoke(admin, missing, {})
    assert r["FunctionError"] == "Unhandled" and body == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {r['ResponseMetadata']['RequestId']} Error: Runtime exited with error: exit status 127"}


def test_aws_throttle_mode_answers_rate_exceeded_at_once(fn, admin, system, raw):
    name = fn("conf-throttle", Tags={"mk1:throttle": "aws"})
    system.aws("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    _invoke(admin, name, {})       # warm, and the registry has read the tag and the concurrency
    # A slow call holds the one slot for 2 s; a quick call meanwhile must be refused at once. The
    # quick call goes once the slow one is seen running: sent together, the quick one often got the
    # slot first, and the slow one was refused instead.
    slow = threading.Thread(target=_invoke, args=(admin, name, {"do": "sleep", "s": 2}))
    slow.start()
    wait_until(lambda: system.status()["functions"][name]["in_use"], lambda n: n >= 1,
               what="the slow call running")
    status, headers, body = raw.invoke(name, body=b'{"do": "sleep", "s": 0}')
    slow.join(30)
    assert status == 429 and headers["x-amzn-errortype"] == "TooManyRequestsException", (status, body)
    assert json.loads(body) == {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User",
                                "message": "Rate Exceeded."}
    assert "retry-after" not in headers and "mk1:throttle=aws" in headers["x-mk1-detail"]
