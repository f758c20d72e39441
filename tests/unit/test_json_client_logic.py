"""The lean JSON client's pure parts: its SigV4 signature is botocore's for the same request at the same
instant; its retry policy and errors, with the transport replaced."""
from __future__ import annotations

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infra.json_client import Signer


def botocore_authorization(url: str, headers: dict, body: bytes, creds: Credentials, service: str,
                           region: str, amz_date: str) -> str:
    req = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    req.context["timestamp"] = amz_date
    auth = SigV4Auth(creds, service, region)
    # add_auth() stamps the current time; build from the pieces with the request's own timestamp.
    req.headers["X-Amz-Date"] = amz_date
    if creds.token:
        req.headers["X-Amz-Security-Token"] = creds.token
    canonical = auth.canonical_request(req)
    signature = auth.signature(auth.string_to_sign(req, canonical), req)
    signed = auth.signed_headers(auth.headers_to_sign(req))
    return f"AWS4-HMAC-SHA256 Credential={auth.scope(req)}, SignedHeaders={signed}, Signature={signature}"


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("service,region,target", [
    ("sqs", "us-east-1", "AmazonSQS.SendMessageBatch"),
    ("dynamodb", "eu-west-2", "DynamoDB_20120810.BatchWriteItem"),
    ("logs", "ap-southeast-1", "Logs_20140328.PutLogEvents"),
])
def test_signature_matches_botocore(service, region, target, token):
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = b'{"QueueUrl":"http://127.0.0.1:4566/000000000000/q","Entries":[{"Id":"0","MessageBody":"  a  b "}]}'
    headers = {"Host": "127.0.0.1:4566", "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target}
    amz_date = "20261203T081500Z"
    ours = Signer(service, region).headers("/", headers, body, creds.access_key, creds.secret_key, token, amz_date)
    assert ours["Authorization"] == botocore_authorization(
        "http://127.0.0.1:4566/", headers, body, creds, service, region, amz_date)
    assert ours["X-Amz-Date"] == amz_date and ours.get("X-Amz-Security-Token") == token


def test_the_signing_key_follows_the_day_and_the_secret():
    signer = Signer("sqs", "us-east-1")
    headers = {"Host": "h", "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ListQueues"}
    sign = lambda secret, date: signer.headers("/", headers, b"{}", "AK", secret, None, date)["Authorization"]  # noqa: E731
    first = sign("s1", "20261203T235959Z")
    assert sign("s1", "20261204T000000Z") != first            # a new day: a new key
    assert sign("s2", "20261203T235959Z") != first            # rotated credentials: a new key
    assert sign("s1", "20261203T235959Z") == first
    creds = Credentials("AK", "s1")
    assert first == botocore_authorization("http://h/", headers, b"{}", creds, "sqs", "us-east-1", "20261203T235959Z")


# -- the client's retry policy, with its transport replaced (pure logic: no endpoint) --

def _client(answers: list, attempts: int = 3):
    import boto3
    from botocore.config import Config
    from infra.json_client import JsonClient
    boto = boto3.session.Session(region_name="us-east-1", aws_access_key_id="AK", aws_secret_access_key="SK").client(
        "dynamodb", endpoint_url="http://127.0.0.1:9", config=Config(retries={"total_max_attempts": attempts}))
    slept: list[float] = []
    lean = JsonClient(boto, Credentials("AK", "SK"), sleep=slept.append)
    sent: list[str] = []

    def send(operation, body):
        sent.append(operation)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    lean._send = send
    return lean, sent, slept


def test_a_dropped_kept_connection_is_retried_at_once_then_with_backoff():
    lean, sent, slept = _client([ConnectionResetError(), ConnectionResetError(), (200, {}, b'{"Count":1}')])
    assert lean.scan(TableName="t")["Count"] == 1
    assert sent == ["Scan"] * 3 and len(slept) == 1


def test_throttling_and_5xx_are_retried_a_client_error_is_not():
    throttled = (400, {}, b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}')
    lean, sent, _ = _client([throttled, (503, {}, b""), (200, {}, b"{}")])
    assert lean.put_item(TableName="t", Item={})["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(sent) == 3
    failed = (400, {"x-amzn-requestid": "r1"},
              b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"no"}')
    lean, sent, _ = _client([failed])
    with pytest.raises(lean.exceptions.ConditionalCheckFailedException) as caught:
        lean.put_item(TableName="t", Item={})
    assert sent == ["PutItem"]
    assert caught.value.response["Error"] == {"Code": "ConditionalCheckFailedException", "Message": "no"}
    assert caught.value.response["ResponseMetadata"] == {"HTTPStatusCode": 400, "RequestId": "r1"}


def test_the_last_attempt_raises_botocores_kind_of_error():
    from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
    lean, _, _ = _client([ConnectionRefusedError()] * 3)
    with pytest.raises(EndpointConnectionError):
        lean.scan(TableName="t")
    lean, _, _ = _client([BrokenPipeError()] * 3)
    with pytest.raises(ConnectionClosedError):
        lean.scan(TableName="t")
    lean, _, _ = _client([(500, {}, b"<html>bad gateway</html>")] * 3)
    with pytest.raises(ClientError) as caught:
        lean.scan(TableName="t")
    assert caught.value.response["Error"]["Code"] == "500"


def test_an_unknown_method_says_so():
    lean, _, _ = _client([])
    with pytest.raises(AttributeError, match="no operation 'send_message'"):
        lean.send_message
