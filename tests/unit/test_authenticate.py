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


# -- the lean verifier against botocore's own signer, over the shapes clients send --
CASES = [
    # (path as sent, query params (or a query string as sent), extra headers to sign, body)
    (PATH, {}, {}, b""),
    ("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3ARuntimeAlpha/invocations",
     {"Qualifier": "$LATEST"}, {}, b'{"prompt": "x"}'),
    ("/2015-03-31/functions/Runtime%20Alpha/./invocations", {"a": "1 2", "b": "x/y~z", "c": ""}, {}, b"{}"),
    ("//2015-03-31/functions/RuntimeAlpha/../RuntimeAlpha/invocations", "k=2&k=1&j=%2F", {}, b"[]"),
    (PATH, {}, {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event",
                "X-Custom": "  spaced   out  value "}, "é ünïcode".encode()),
    (PATH, {}, {"X-Amz-Security-Token": "tok/en+=="}, b'{"prompt": "hi"}'),
]


def _botocore_signed(path, params, extra, body, sha_header=False):
    from urllib.parse import parse_qs, urlsplit
    url = f"http://127.0.0.1:8000{path}" + (f"?{params}" if isinstance(params, str) else "")
    req = AWSRequest(method="POST", url=url, data=body, params=params if isinstance(params, dict) else {},
                     headers=dict(extra))
    if sha_header:
        import hashlib
        req.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials("AKIDUSER1", "s3cret"), "lambda", "us-east-1").add_auth(req)
    prepared = req.prepare()
    parts = urlsplit(prepared.url)
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers["host"] = "127.0.0.1:8000"
    return parts.path, parse_qs(parts.query, keep_blank_values=True), headers, prepared.body or b""


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("sha_header", [False, True])
def test_accepts_what_botocore_signs_and_nothing_else(case, sha_header):
    path, query, headers, body = _botocore_signed(*CASES[case], sha_header=sha_header)
    assert verify("POST", path, query, headers, body, KEYS).user == "user1"
    with pytest.raises(InvalidSignature):
        verify("POST", path, query, headers, body + b" ", KEYS)
    with pytest.raises(InvalidSignature):
        verify("PUT", path, query, headers, body, KEYS)
    with pytest.raises(InvalidSignature):
        verify("POST", path, {**query, "extra": ["1"]}, headers, body, KEYS)
    with pytest.raises(InvalidSignature):
        verify("POST", path.replace("functions", "Functions"), query, headers, body, KEYS)


def test_a_payload_hash_header_must_be_the_bodys():
    path, query, headers, body = _botocore_signed(PATH, {}, {}, b'{"prompt": "hi"}', sha_header=True)
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        verify("POST", path, query, headers, b'{"prompt": "evil"}', KEYS)


def test_a_malformed_date_is_refused_as_incomplete():
    h, b = signed()
    for bad in ("", "20261301T000000Z", "2026-12-01T00:00:00Z", "20261201T250000Z"):
        with pytest.raises(IncompleteSignature):
            check({**h, "x-amz-date": bad}, b)


def test_made_up_key_ids_cost_one_read_per_interval_not_one_each():
    """Issue: every request with a made-up key id forced a read of all keys and policies (~18 ms)."""
    from chalicelib.authenticate import UNKNOWN_KEY_RECHECK_S
    now = [100.0]
    reads = []
    stored = {"AKIAREAL": {"user": "u", "secret": "s"}}

    def load():
        reads.append(now[0])
        return dict(stored)
    ks = KeyStore(load, clock=lambda: now[0])
    assert [ks.refresh_for(f"AKIAFAKE{i}") for i in range(100)].count(True) == 1 and len(reads) == 1
    stored["AKIANEW"] = {"user": "n", "secret": "t"}          # provisioned a moment ago
    now[0] += UNKNOWN_KEY_RECHECK_S
    assert ks.refresh_for("AKIANEW") and ks.lookup("AKIANEW") == {"user": "n", "secret": "t"}
    assert not ks.refresh_for("AKIAFAKE1")                    # within the interval of the last read
