"""Invoke's error answers, shape for shape and word for word.

Sources: https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html (errors, FunctionName and
Qualifier constraints); botocore's lambda/2015-03-31 model (member names and casing of each error);
AWS-recorded snapshots in LocalStack's tests/aws/services/lambda_/test_lambda_api.snapshot.json
(test_function_name_and_qualifier_validation[invoke], test_ops_with_arn_qualifier_mismatch,
test_get_function_wrong_region[invoke]) and test_lambda.snapshot.json (test_invoke_exceptions,
test_lambda_invoke_payload_encoding_error, test_reserved_concurrency).
"""
import json

import pytest
from botocore.exceptions import ClientError

from lambda_http import aws_cli, b64json

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)

NAME_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
                r"(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?")


@pytest.fixture(scope="module")
def arn(system) -> str:
    """The function ARN prefix of the system's account (looked up: moto's and LocalStack's differ)."""
    return f"arn:aws:lambda:us-east-1:{system.account()}:function:"


def _error(client, **kw) -> dict:
    with pytest.raises(ClientError) as e:
        client.invoke(**{"Payload": b"{}", **kw})
    return e.value.response


# -- ValidationException: API_Invoke.html "FunctionName ... Length Constraints: Minimum length of 1.
#    Maximum length of 170. Pattern: ..." and "Qualifier ... 1-128, Pattern: (|[a-zA-Z0-9$_-]+)" --

def test_an_invalid_function_name_is_a_validation_error_in_aws_words(raw):
    status, headers, body = raw.invoke("my-function!")
    assert status == 400 and headers["x-amzn-errortype"] == "ValidationException"
    assert json.loads(body) == {"message": "1 validation error detected: Value 'my-function!' at 'functionName' "
                                           "failed to satisfy constraint: Member must satisfy regular expression "
                                           f"pattern: {NAME_PATTERN}"}


def test_an_invalid_qualifier_is_a_validation_error(admin):
    r = _error(admin, FunctionName="RuntimeAlpha", Qualifier="invalid!")
    assert r["Error"]["Code"] == "ValidationException"
    assert r["Error"]["Message"] == ("1 validation error detected: Value 'invalid!' at 'qualifier' failed to satisfy "
                                     "constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")


def test_length_and_pattern_errors_come_in_one_message(admin):
    name = "arn:aws:lambda:invalid-region:123456789012:function:my-function" + "a" * 170
    r = _error(admin, FunctionName=name, Qualifier="a" * 129)
    msg = r["Error"]["Message"]
    assert msg.startswith("3 validation errors detected: ")
    parts = msg.removeprefix("3 validation errors detected: ").split("; ")
    assert sorted(parts) == sorted([
        f"Value '{name}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 170",
        f"Value '{name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression "
        f"pattern: {NAME_PATTERN}",
        f"Value '{'a' * 129}' at 'qualifier' failed to satisfy constraint: Member must have length less than or "
        f"equal to 128"])


def test_a_long_plain_name_is_not_found_not_invalid(admin):
    """AWS checks no 64-character limit on Invoke: a 65-character name is simply not found."""
    r = _error(admin, FunctionName="a" * 65)
    assert r["Error"]["Code"] == "ResourceNotFoundException"


def test_an_unknown_invocation_type_names_aws_enum(raw):
    status, headers, body = raw.invoke("RuntimeAlpha", headers={"X-Amz-Invocation-Type": "dry_run"})
    assert status == 400 and headers["x-amzn-errortype"] == "ValidationException"
    assert json.loads(body)["message"] == ("1 validation error detected: Value 'dry_run' at 'invocationType' failed "
                                           "to satisfy constraint: Member must satisfy enum value set: "
                                           "[DryRun, RequestResponse, Event]")


# -- ResourceNotFoundException {"Type": "User", "Message": ...} (botocore model: Type, Message) --

def test_a_missing_function_names_its_latest_arn(raw, arn):
    status, headers, body = raw.invoke("doesnotexist")
    assert status == 404 and headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert json.loads(body) == {"Type": "User", "Message": f"Function not found: {arn}doesnotexist:$LATEST"}
    assert headers["x-amzn-requestid"]


def test_a_missing_version_or_alias_names_it(admin, arn):
    for q in ("99", "no-such-alias"):
        r = _error(admin, FunctionName="RuntimeAlpha", Qualifier=q)
        assert r["Error"]["Code"] == "ResourceNotFoundException"
        assert r["Error"]["Message"] == f"Function not found: {arn}RuntimeAlpha:{q}"


def test_who_may_not_invoke_learns_nothing_about_existence(system):
    """Authorization comes before the existence check: user1 gets AccessDenied for any other name."""
    r = _error(system.lambda_client("user1"), FunctionName="doesnotexist")
    assert r["Error"]["Code"] == "AccessDeniedException"


def test_access_denied_body_is_message_only(system, arn):
    from lambda_http import Raw
    status, headers, body = Raw(system, "user1").invoke("RuntimeBeta")
    assert status == 403 and headers["x-amzn-errortype"] == "AccessDeniedException"
    assert json.loads(body) == {"Message": f"User: arn:aws:iam::{system.account()}:user/user1 is not authorized to perform: "
                                           f"lambda:InvokeFunction on resource: {arn}RuntimeBeta because no "
                                           "identity-based policy allows the lambda:InvokeFunction action"}


# -- InvalidParameterValueException {"Type": "User", "message": ...} --

def test_a_qualifier_in_the_name_that_disagrees_with_the_parameter(raw, arn):
    status, headers, body = raw.invoke(f"{arn}RuntimeAlpha:$LATEST", qualifier="1")
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidParameterValueException"
    assert json.loads(body) == {"Type": "User", "message": "The derived qualifier from the function name does not "
                                                           "match the specified qualifier."}


# -- an ARN of another region or account is never run here --

def test_an_arn_of_another_region_is_not_reachable(admin):
    r = _error(admin, FunctionName="arn:aws:lambda:eu-west-1:123456789012:function:RuntimeAlpha")
    assert r["Error"]["Code"] == "ResourceNotFoundException"
    assert r["Error"]["Message"] == "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"


def test_an_arn_of_another_account_is_refused(admin):
    r = _error(admin, FunctionName="arn:aws:lambda:us-east-1:999999999999:function:RuntimeAlpha")
    assert r["Error"]["Code"] == "AccessDeniedException"
    assert "because no resource-based policy allows the lambda:InvokeFunction action" in r["Error"]["Message"]


# -- InvalidRequestContentException (Jackson's words, as AWS's front end writes them) --

def test_a_payload_that_is_not_json(raw):
    status, headers, body = raw.invoke("RuntimeAlpha", body=b"test data")
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidRequestContentException"
    got = json.loads(body)
    assert set(got) == {"Type", "message"} and got["Type"] == "User"
    assert got["message"].startswith("Could not parse request body into json: Could not parse payload into json: "
                                      "Unrecognized token 'test': was expecting (JSON String, Number, Array, "
                                      "Object or token 'null', 'true' or 'false')\n at [Source: REDACTED")


def test_an_invalid_client_context(admin):
    r = _error(admin, FunctionName="RuntimeAlpha", ClientContext="not base64 json!")
    assert r["Error"]["Code"] == "InvalidRequestContentException"
    assert r["Error"]["Message"] == "Client context must be a valid Base64-encoded JSON object."


# -- 413 RequestEntityTooLargeException {"Message": ...} (the code AWS sends; botocore's model names
#    RequestTooLargeException, which never arrives). Limits: API_Invoke.html / Lambda quotas --

def test_a_sync_payload_over_6_mb(raw):
    status, headers, body = raw.invoke("RuntimeAlpha", body=b'"' + b"a" * (6 * 1024 * 1024) + b'"')
    assert status == 413 and headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert json.loads(body) == {"Message": "Request must be smaller than 6291456 bytes for the InvokeFunction operation"}


def test_an_event_payload_over_1_mb(raw):
    payload = b'"' + b"a" * (1024 * 1024) + b'"'
    status, headers, body = raw.invoke("RuntimeAlpha", body=payload, headers={"X-Amz-Invocation-Type": "Event"})
    assert status == 413 and json.loads(body) == {
        "Message": f"{len(payload)} byte payload is too large for the Event invocation type (limit 1048576 bytes)"}


# -- the aws CLI prints AWS's code and words --

def test_the_aws_cli_shows_the_validation_error(system, tmp_path):
    out = aws_cli(system, "lambda", "invoke", "--function-name", "RuntimeAlpha", "--qualifier", "bad!",
                  str(tmp_path / "out.json"))
    assert out.returncode != 0
    assert "An error occurred (ValidationException) when calling the Invoke operation: 1 validation error " \
           "detected: Value 'bad!' at 'qualifier'" in out.stderr


def test_client_context_b64json_helper_is_valid():
    assert json.loads(__import__("base64").b64decode(b64json({"a": 1}))) == {"a": 1}


# -- 429 TooManyRequestsException {"Reason", "Type", "message": "Rate Exceeded."} in mk1's default
#    (queueing) mode too: AWS's message, mk1's reason beside it (X-Mk1-Detail), its wait in Retry-After --

def test_reserved_concurrency_zero_answers_aws_throttle_body(fn, raw, system):
    name = fn("conf-zero")
    system.aws("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    from helpers import wait_until
    status, headers, body = wait_until(lambda: raw.invoke(name), lambda a: a[0] == 429,
                                       what="the registry to read reserved concurrency 0")
    assert headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert json.loads(body) == {"Type": "User", "message": "Rate Exceeded.",
                                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                                "retryAfterSeconds": "10"}
    assert headers["retry-after"] == "10" and "reserved concurrency 0" in headers["x-mk1-detail"]


def test_dry_run_answers_204(raw):
    status, headers, body = raw.invoke("RuntimeAlpha", headers={"X-Amz-Invocation-Type": "DryRun"})
    assert status == 204 and body == b"" and headers["x-amzn-requestid"]
