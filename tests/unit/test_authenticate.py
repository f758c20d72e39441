from datetime import datetime, timedelta, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from chalicelib.authenticate import KeyStore, verify
from chalicelib.errors import (IncompleteSignature, InvalidSignature, MissingAuthenticationToken,
                               UnrecognizedClient)

KEYS = KeyStore(lambda: {"AKIDUSER1": {"user": "user1", "secret": "s3cret"}})
KEYS.refresh()
PATH = "/2015-03-31/functions/RuntimeAlpha/invocations"


def signed(secret="s3cret", akid="AKIDUSER1", body=b'{"prompt":"hi"}', query="Qualifier=%24LATEST", when=None):
    url = f"http://127.0.0.1:8000{PATH}" + (f"?{query}" if query else "")
    req = AWSRequest(method="POST", url=url, data=body)
    auth = SigV4Auth(Credentials(akid, secret), "lambda", "us-east-1")
    if when is not None:
        import unittest.mock as m
        with m.patch("botocore.auth.datetime") as dt:
            dt.datetime.now.return_value = when.replace(tzinfo=None)
            dt.datetime.utcnow.return_value = when.replace(tzinfo=None)
            auth.add_auth(req)
    else:
        auth.add_auth(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers["host"] = "127.0.0.1:8000"
    return headers, body


def check(headers, body, query={"Qualifier": ["$LATEST"]}, now=None):
    return verify("POST", PATH, query, headers, body, KEYS, now=now)


def test_valid_signature_identifies_the_user():
    h, b = signed()
    assert check(h, b).user == "user1"


def test_tampered_body_or_query_fails():
    h, b = signed()
    with pytest.raises(InvalidSignature):
        check(h, b'{"prompt":"evil"}')
    with pytest.raises(InvalidSignature):
        check(h, b, {"Qualifier": ["1"]})


def test_wrong_secret_unknown_key_missing_and_garbled():
    with pytest.raises(InvalidSignature):
        check(*signed(secret="wrong"))
    with pytest.raises(UnrecognizedClient):
        check(*signed(akid="AKIDNOBODY"))
    h, b = signed()
    with pytest.raises(MissingAuthenticationToken):
        check({k: v for k, v in h.items() if k != "authorization"}, b)
    with pytest.raises(IncompleteSignature):
        check({**h, "authorization": "AWS4-HMAC-SHA256 garbage"}, b)


def test_clock_skew_bound_is_15_minutes():
    h, b = signed()
    now = datetime.now(timezone.utc)
    assert check(h, b, now=now + timedelta(minutes=14)).user == "user1"
    with pytest.raises(InvalidSignature, match="Signature expired"):
        check(h, b, now=now + timedelta(minutes=16))
    with pytest.raises(InvalidSignature, match="Signature expired"):
        check(h, b, now=now - timedelta(minutes=16))
