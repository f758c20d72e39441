"""The embedded AWS's port (moto, behind infra/aws_gate.py): a request must be signed by a known
identity, and IAM decides what it may do. The shared system runs with the gate on, as `mk1 up` does.

The refusals are AWS's common errors, in each protocol's own form, so boto3 raises them with AWS's
codes: https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html (InvalidClientTokenId,
MissingAuthenticationToken, SignatureDoesNotMatch, AccessDenied); JSON services' names for the same:
https://docs.aws.amazon.com/lambda/latest/api/CommonErrors.html (UnrecognizedClientException);
S3's: https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html (InvalidAccessKeyId).
"""
import json
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import process_environ, wait_until
from infra import names
from rawhttp import signed_invoke

MADE_UP = ("AKIAMADEUPKEY0000000", "made-up-secret")


def _client(system, service, keys):
    return boto3.client(service, endpoint_url=system.aws_url, region_name="us-east-1",
                        aws_access_key_id=keys[0], aws_secret_access_key=keys[1])


def _refused(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("service, call, code", [
    ("secretsmanager", lambda c: c.get_secret_value(SecretId=names.USERS_SECRET), "UnrecognizedClientException"),
    ("iam", lambda c: c.list_users(), "InvalidClientTokenId"),
    ("lambda", lambda c: c.list_functions(), "UnrecognizedClientException"),
    ("dynamodb", lambda c: c.scan(TableName=names.USAGE_TABLE), "UnrecognizedClientException"),
    ("sqs", lambda c: c.list_queues(), "InvalidClientTokenId"),
    ("s3", lambda c: c.list_objects_v2(Bucket=names.CODE_BUCKET), "InvalidAccessKeyId"),
    ("logs", lambda c: c.describe_log_groups(), "UnrecognizedClientException"),
])
def test_a_made_up_key_gets_nothing(system, service, call, code):
    assert _refused(lambda: call(_client(system, service, MADE_UP))) == (code, 403)


def test_a_known_key_with_a_wrong_secret_is_a_signature_mismatch(system):
    akid, _ = system.keys("admin")
    got = _refused(lambda: _client(system, "lambda", (akid, "not-the-secret")).list_functions())
    assert got == ("InvalidSignatureException", 403)


def test_unsigned_requests_and_moto_s_own_api_are_refused(system):
    def status(path, data=None, headers=None):
        req = urllib.request.Request(system.aws_url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
    assert status("/moto-api/")[0] == 200          # the liveness probe: the page, not its data
    for path in ("/moto-api/data.json", "/2015-03-31/functions/", f"/{names.CODE_BUCKET}"):
        assert status(path)[0] == 403, path
    code, body = status("/moto-api/reset", data=b"")
    assert code == 403
    code, body = status("/", data=json.dumps({"SecretId": names.USERS_SECRET}).encode(),
                        headers={"X-Amz-Target": "secretsmanager.GetSecretValue",
                                 "Content-Type": "application/x-amz-json-1.1"})
    assert code == 403 and json.loads(body)["__type"] == "MissingAuthenticationTokenException"
    assert {"RuntimeAlpha", "RuntimeBeta"} <= {f["FunctionName"] for f in system.aws("lambda").list_functions()["Functions"]}


def test_user1_cannot_grant_itself_runtime_beta_nor_change_the_system(system):
    u1 = {svc: system.aws(svc, "user1") for svc in ("iam", "lambda", "secretsmanager", "dynamodb", "s3")}
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    attempts = [
        lambda: u1["iam"].put_user_policy(UserName="user1", PolicyName="all", PolicyDocument=doc),
        lambda: u1["iam"].attach_user_policy(UserName="user1", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
        lambda: u1["iam"].create_access_key(UserName="admin"),
        lambda: u1["secretsmanager"].get_secret_value(SecretId=names.USERS_SECRET),
        lambda: u1["lambda"].put_function_concurrency(FunctionName="RuntimeBeta", ReservedConcurrentExecutions=100),
        lambda: u1["lambda"].update_function_code(FunctionName="RuntimeAlpha", ZipFile=b"PK\x05\x06" + b"\0" * 18),
        lambda: u1["lambda"].get_function(FunctionName="RuntimeAlpha"),
        lambda: u1["dynamodb"].put_item(TableName=names.USAGE_TABLE, Item={"user": {"S": "user1"}, "sk": {"S": "x"}}),
        lambda: u1["s3"].put_object(Bucket=names.CODE_BUCKET, Key="x", Body=b"x"),
    ]
    for attempt in attempts:
        code, status = _refused(attempt)
        assert status == 403 and code in ("AccessDenied", "AccessDeniedException"), code
    assert system.aws("iam").list_user_policies(UserName="user1")["PolicyNames"] == ["mk1-user1"]
    time.sleep(1.5)   # past the dispatcher's policy refresh: still denied
    assert signed_invoke(system.url, system.keys("user1"), "RuntimeBeta", b"{}").status == 403
    assert system.aws("lambda").get_function_concurrency(FunctionName="RuntimeBeta")["ReservedConcurrentExecutions"] == 3


def test_what_iam_grants_a_user_it_may_do_and_no_more(system):
    """IAM decides on the port as on AWS: the operator grants user2 reading RuntimeBeta's configuration;
    user2 then may, on that function only, and the grant's removal takes it back."""
    iam, u2 = system.aws("iam"), system.aws("lambda", "user2")
    grant = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "lambda:GetFunctionConfiguration",
        "Resource": "arn:aws:lambda:*:*:function:RuntimeBeta"}]})
    iam.put_user_policy(UserName="user2", PolicyName="read-beta", PolicyDocument=grant)
    try:
        assert u2.get_function_configuration(FunctionName="RuntimeBeta")["FunctionName"] == "RuntimeBeta"
        assert _refused(lambda: u2.get_function_configuration(FunctionName="RuntimeAlpha")) == \
            ("AccessDeniedException", 403)
        assert _refused(lambda: u2.get_function(FunctionName="RuntimeBeta"))[0] == "AccessDeniedException"
    finally:
        iam.delete_user_policy(UserName="user2", PolicyName="read-beta")
    assert _refused(lambda: u2.get_function_configuration(FunctionName="RuntimeBeta"))[0] == "AccessDeniedException"


def test_a_function_s_code_link_is_presigned(system):
    """GetFunction's Code.Location downloads the zip as is (AWS: a presigned URL, valid 10 minutes);
    the same path without its signature, or with another one, is refused."""
    location = system.aws("lambda").get_function(FunctionName="RuntimeAlpha")["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=10) as r:
        assert r.read()[:2] == b"PK"
    bare, _, query = location.partition("?")
    forged = bare + "?" + query[:-4] + ("0000" if not query.endswith("0000") else "1111")
    for url in (bare, forged):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        assert e.value.code == 403


def test_the_operator_profile_administers_and_users_keys_still_invoke(system):
    ops = system.aws("lambda")
    ops.put_function_concurrency(FunctionName="RuntimeAlpha", ReservedConcurrentExecutions=2)
    try:
        wait_until(lambda: system.status()["functions"]["RuntimeAlpha"]["reserved_concurrency"] == 2,
                   what="the dispatcher to read the operator's change")
    finally:
        ops.put_function_concurrency(FunctionName="RuntimeAlpha", ReservedConcurrentExecutions=3)
    assert signed_invoke(system.url, system.keys("user1"), "RuntimeAlpha", b'{"prompt": "hi"}').status == 200


def test_function_processes_carry_no_users_or_operators_keys(system):
    """A function's environment has no key of mk1's: not the operator's (the dispatcher's own, to the
    AWS port), not any user's. (On the process backend a function is a process of the same OS user and
    could read .mk1/credentials itself: docs/SECURITY.md; the Docker backend mounts only its code.)"""
    system.function("RuntimeAlpha", "admin").invoke({"prompt": "env"})
    containers = system.status()["functions"]["RuntimeAlpha"]["containers"]
    pids = [int(c["handle"][4:]) for c in containers if (c["handle"] or "").startswith("pid-")]
    assert pids
    secrets = [*system.operator_keys(), *(k for u in ("user1", "user2", "admin") for k in system.keys(u))]
    for pid in pids:
        env = "\0".join(f"{k}={v}" for k, v in process_environ(pid).items())
        assert env and not [s for s in secrets if s in env], pid


def test_presigned_s3_urls_work_as_on_aws_and_only_as_signed(system):
    """SigV4 in the query string (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html):
    a URL the operator presigns downloads the object unsigned; a changed signature, an expired URL,
    or one presigned by a user whose IAM policies do not allow s3:GetObject is refused."""
    s3 = system.aws("s3")
    s3.put_object(Bucket=names.CODE_BUCKET, Key="presign/hello.txt", Body=b"hello presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": names.CODE_BUCKET, "Key": "presign/hello.txt"},
                                    ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"hello presigned"
    akid, secret = system.operator_keys()   # and the SigV4 form (X-Amz-Signature)
    s3v4 = boto3.client("s3", endpoint_url=system.aws_url, region_name="us-east-1", aws_access_key_id=akid,
                        aws_secret_access_key=secret, config=Config(signature_version="s3v4"))
    url4 = s3v4.generate_presigned_url("get_object", Params={"Bucket": names.CODE_BUCKET, "Key": "presign/hello.txt"},
                                       ExpiresIn=60)
    assert "X-Amz-Signature=" in url4
    with urllib.request.urlopen(url4, timeout=10) as r:
        assert r.read() == b"hello presigned"

    def refused(u: str) -> tuple[int, bytes]:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(u, timeout=10)
        return e.value.code, e.value.read()
    for signed in (url, url4):
        at = signed.index("Signature=") + len("Signature=")
        forged = signed[:at] + ("A" if signed[at] != "A" else "B") + signed[at + 1:]
        assert refused(forged)[0] == 403
    short = s3.generate_presigned_url("get_object", Params={"Bucket": names.CODE_BUCKET, "Key": "presign/hello.txt"},
                                      ExpiresIn=1)
    time.sleep(2)
    code, body = refused(short)
    assert code == 403 and b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body
    by_user1 = system.aws("s3", "user1").generate_presigned_url(
        "get_object", Params={"Bucket": names.CODE_BUCKET, "Key": "presign/hello.txt"}, ExpiresIn=60)
    code, body = refused(by_user1)
    assert code == 403 and b"s3:GetObject" in body
