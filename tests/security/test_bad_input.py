"""Bad input at the front door: each is answered in Lambda's error shape and changes nothing.

Requests are built by hand (tests/security/rawhttp.py: botocore SigV4Auth with the key and
timestamp we choose, sent with http.client or a raw socket), so the server sees exactly
these bytes. "Nothing changed" = no usage record and no container started for the call.
"""
import json
import socket
from datetime import datetime, timedelta, timezone

import pytest

from rawhttp import (is_lambda_error_body, assert_lambda_error, invoke_path, parse_raw, raw_exchange, send, signed_headers,
                     signed_invoke)
from state import Unchanged

SIX_MB = 6 * 1024 * 1024
OK_BODY = b'{"prompt": "hello world"}'


def _now(**delta):
    return datetime.now(timezone.utc) + timedelta(**delta)


# (id, request builder(system) -> Answer, status, x-amzn-ErrorType, part of the message)
REJECTED = [
    ("malformed-json", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", b'{"prompt": "x"'),
     400, "InvalidRequestContentException", "Could not parse payload into json"),
    ("not-utf8", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", b'{"prompt": "\xff\xfe"}'),
     400, "InvalidRequestContentException", "json"),
    ("6MB+1", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", b" " * (SIX_MB + 1)),
     413, "RequestEntityTooLargeException", "smaller than 6291456 bytes"),
    ("event-1MB+1", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", b" " * (1024 * 1024 + 1),
                                            headers={"X-Amz-Invocation-Type": "Event"}),
     413, "RequestEntityTooLargeException", "Event"),
    ("unknown-function", lambda s: signed_invoke(s.url, s.keys("admin"), "NoSuchFunction", OK_BODY),
     404, "ResourceNotFoundException", "NoSuchFunction"),
    ("unknown-qualifier", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", OK_BODY, qualifier="7"),
     404, "ResourceNotFoundException", "RuntimeBeta:7"),
    ("unknown-alias-in-arn", lambda s: signed_invoke(
        s.url, s.keys("admin"), "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3ARuntimeBeta%3Aprod",
        OK_BODY), 404, "ResourceNotFoundException", "RuntimeBeta:prod"),
    ("invalid-invocation-type", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", OK_BODY,
                                                        headers={"X-Amz-Invocation-Type": "Sometimes"}),
     400, "ValidationException", "invocationType"),
    ("invalid-log-type", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", OK_BODY,
                                                 headers={"X-Amz-Log-Type": "Everything"}),
     400, "ValidationException", "logType"),
    ("missing-authorization", lambda s: send(s.url, "POST", invoke_path("RuntimeBeta"), OK_BODY),
     403, "MissingAuthenticationTokenException", "Missing Authentication Token"),
    ("garbled-authorization", lambda s: send(s.url, "POST", invoke_path("RuntimeBeta"), OK_BODY,
                                             {"Authorization": "AWS4-HMAC-SHA256 Credential=%%%, Signature=zz"}),
     400, "IncompleteSignatureException", "not a valid AWS4-HMAC-SHA256"),
    ("basic-auth", lambda s: send(s.url, "POST", invoke_path("RuntimeBeta"), OK_BODY,
                                  {"Authorization": "Basic YWRtaW46YWRtaW4="}),
     400, "IncompleteSignatureException", None),
    ("wrong-secret", lambda s: signed_invoke(s.url, (s.keys("admin")[0], "x" * 40), "RuntimeBeta", OK_BODY),
     403, "InvalidSignatureException", "signature we calculated does not match"),
    ("other-users-secret", lambda s: signed_invoke(s.url, (s.keys("admin")[0], s.keys("user2")[1]),
                                                   "RuntimeBeta", OK_BODY),
     403, "InvalidSignatureException", "does not match"),
    ("unknown-access-key", lambda s: signed_invoke(s.url, ("AKIAIOSFODNN7EXAMPLE", "x" * 40), "RuntimeBeta", OK_BODY),
     403, "UnrecognizedClientException", "security token included in the request is invalid"),
    ("expired-16-min", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", OK_BODY, when=_now(minutes=-16)),
     403, "InvalidSignatureException", "Signature expired"),
    ("future-16-min", lambda s: signed_invoke(s.url, s.keys("admin"), "RuntimeBeta", OK_BODY, when=_now(minutes=16)),
     403, "InvalidSignatureException", "Signature expired"),
    ("traversal-encoded", lambda s: signed_invoke(s.url, s.keys("admin"), "..%2F..%2Fetc%2Fpasswd", OK_BODY),
     400, "ValidationException", "../../etc/passwd"),
    ("traversal-encoded-to-a-function", lambda s: signed_invoke(s.url, s.keys("admin"), "..%2F..%2FRuntimeBeta",
                                                                OK_BODY),
     400, "ValidationException", "../../RuntimeBeta"),
    ("nul-in-name", lambda s: signed_invoke(s.url, s.keys("admin"), "Runtime%00Beta", OK_BODY),
     400, "ValidationException", None),
    ("denied-user", lambda s: signed_invoke(s.url, s.keys("user1"), "RuntimeBeta", OK_BODY),
     403, "AccessDeniedException", "user/user1 is not authorized to perform: lambda:InvokeFunction"),
]


@pytest.mark.parametrize("build,status,code,part", [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected_with_lambda_error_and_nothing_runs(system, build, status, code, part):
    with Unchanged(system):
        answer = build(system)
        body = assert_lambda_error(answer, status, code, part)
        assert answer.headers.get("x-amzn-requestid")
        assert b"Traceback" not in answer.body and b"root:" not in answer.body
        assert set(body) <= {"Type", "message", "Message"}   # AWS's keys, per error (rawhttp.BODY_SHAPE)


@pytest.mark.parametrize("payload,message_part", [
    (b"[1, 2, 3]", "event must be a JSON object"),
    (b"42", "event must be a JSON object"),
    (b'"just a string"', "event must be a JSON object"),
    (b"null", "event must be a JSON object"),
    (b"{}", 'no "prompt" field'),
    (b'{"prompt": 7}', '"prompt" must be a string'),
    (b'{"prompt": null}', '"prompt" must be a string'),
    (b'{"prompt": ["a"]}', '"prompt" must be a string'),
    (b'{"prompt": "' + b"x" * 100_001 + b'"}', "the limit is 100000"),
], ids=["array", "number", "string", "null", "no-prompt", "int-prompt", "null-prompt", "list-prompt", "too-long"])
def test_valid_json_that_is_not_an_event_is_a_function_error(system, payload, message_part):
    """Lambda passes any valid JSON to the function: the handler refuses it (InvalidEvent), 200 + header."""
    a = signed_invoke(system.url, system.keys("user2"), "RuntimeBeta", payload)
    assert a.status == 200 and a.headers.get("x-amz-function-error") == "Unhandled", a
    err = a.json()
    assert err["errorType"] == "InvalidEvent" and message_part in err["errorMessage"]
    rid = a.headers["x-amzn-requestid"]
    recs = system.records_for([rid], timeout=5)
    assert [(r["status"], r["error_type"], r["user"]) for r in recs] == [("function_error", "InvalidEvent", "user2")]


def test_a_body_swapped_under_a_signed_payload_hash_is_refused(system):
    """X-Amz-Content-SHA256 signed with the first body's hash: that hash must be the body's."""
    import hashlib
    path, first_body = invoke_path("RuntimeAlpha"), b'{"prompt": "a"}'
    captured = signed_headers(system.url, "POST", path, first_body, system.keys("admin"),
                              {"X-Amz-Content-SHA256": hashlib.sha256(first_body).hexdigest()})
    assert send(system.url, "POST", path, first_body, captured).status == 200
    with Unchanged(system):
        assert_lambda_error(send(system.url, "POST", path, b'{"prompt": "rm -rf /"}', captured),
                            403, "InvalidSignatureException", "x-amz-content-sha256")


def test_replayed_signature_with_a_changed_body_or_target_is_refused(system):
    path = invoke_path("RuntimeAlpha")
    captured = signed_headers(system.url, "POST", path, b'{"prompt": "a"}', system.keys("admin"))
    first = send(system.url, "POST", path, b'{"prompt": "a"}', captured)
    assert first.status == 200 and json.loads(first.body)["response"] == "[alpha] a"
    with Unchanged(system):
        assert_lambda_error(send(system.url, "POST", path, b'{"prompt": "rm -rf /"}', captured),
                            403, "InvalidSignatureException", "does not match")
        assert_lambda_error(send(system.url, "POST", invoke_path("RuntimeBeta"), b'{"prompt": "a"}', captured),
                            403, "InvalidSignatureException", "does not match")
        assert_lambda_error(send(system.url, "POST", path + "?Qualifier=%24LATEST", b'{"prompt": "a"}', captured),
                            403, "InvalidSignatureException", "does not match")
        # the same signature re-dated: the date is signed too
        redated = {**captured, "X-Amz-Date": _now(minutes=-1).strftime("%Y%m%dT%H%M%SZ")}
        assert send(system.url, "POST", path, b'{"prompt": "a"}', redated).status == 403


def _signed_raw(system, path: str, body: bytes, extra_lines: bytes) -> bytes:
    """A signed request with unsigned header lines of our choosing, written on a raw socket."""
    host = system.url.split("//")[1]
    h = signed_headers(system.url, "POST", path, body, system.keys("admin"))
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in h.items() if k != "Host"]
    head = ("\r\n".join(lines) + "\r\n").encode() + extra_lines
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    return raw_exchange(system.port, head + body)


INJECTIONS = [  # (path, unsigned extra header lines)
    (invoke_path("RuntimeBeta"), b"X-Amz-Invocation-Type: Bogus\rX-Injected: 1\r\n"),
    (invoke_path("RuntimeBeta"), b"X-Amz-Invocation-Type: Bogus\nX-Injected: 1\r\n"),
    (invoke_path("RuntimeBeta"), b"X-Amz-Invocation-Type: Bogus%0d%0aX-Injected:%201\r\n"),
    ("/2015-03-31/functions/Runtime%0D%0AX-Injected:%201/invocations", b""),
    ("/2015-03-31/functions/RuntimeBeta/invocations?Qualifier=x%0D%0AX-Injected%3A%201", b""),
]


@pytest.mark.parametrize("path,extra", INJECTIONS, ids=["bare-CR", "bare-LF", "encoded-in-header",
                                                        "encoded-in-name", "encoded-in-qualifier"])
def test_header_injection_never_reaches_the_response(system, path, extra):
    with Unchanged(system):
        raw = _signed_raw(system, path, b"{}", extra)
    status, headers, body = parse_raw(raw)
    head = raw.partition(b"\r\n\r\n")[0]
    assert b"x-injected" not in head.lower() and "set-cookie" not in headers, raw
    assert 400 <= status < 500, raw
    assert headers.get("x-amzn-errortype") and is_lambda_error_body(json.loads(body)), raw


def test_a_huge_header_is_refused_and_the_server_keeps_serving(system):
    host = system.url.split("//")[1]
    probes = [
        b"POST /2015-03-31/functions/RuntimeBeta/invocations HTTP/1.1\r\nHost: " + host.encode()
        + b"\r\nX-Big: " + b"a" * 65536 + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"POST /2015-03-31/functions/RuntimeBeta/invocations HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 900) for i in range(150)) + b"Content-Length: 2\r\n\r\n{}",
        b"POST /2015-03-31/functions/" + b"A" * 70000 + b"/invocations HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ]
    # a TLS ClientHello (no line end: the server waits for more) and a half-sent request stay open
    # while the server keeps answering everyone else
    hold = [socket.create_connection(("127.0.0.1", system.port), timeout=5) for _ in range(2)]
    hold[0].sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200))
    hold[1].sendall(b"POST /2015-03-31/functions/RuntimeBeta/invocations HTTP/1.1\r\nHost: x\r\nContent-Le")
    with Unchanged(system):
        for p in probes:
            raw = raw_exchange(system.port, p, timeout=10)
            if raw.startswith(b"HTTP/"):
                assert 400 <= parse_raw(raw)[0] < 500, raw[:300]
            else:   # closed, or an HTTP/0.9-style answer (no status line) to a one-word request line
                assert raw == b"" or b"Error code: 4" in raw, raw[:300]
    assert send(system.url, "GET", "/health").status == 200
    a = signed_invoke(system.url, system.keys("admin"), "RuntimeAlpha", OK_BODY)
    assert a.status == 200 and a.json()["response"] == "[alpha] world hello"
    for s in hold:
        s.close()


# -- found by these tests, fixed in 4fb793b (see docs/SECURITY.md, "Findings") --

def test_literal_traversal_in_the_path_gets_a_lambda_error(system):
    """`../../x` unencoded: the path matches no route; the answer must still be Lambda's error shape."""
    path = "/2015-03-31/functions/../../x/invocations"
    with Unchanged(system):
        for headers in ({}, signed_headers(system.url, "POST", path, OK_BODY, system.keys("admin"))):
            a = send(system.url, "POST", path, OK_BODY, headers)
            assert 400 <= a.status < 500 and b"root:" not in a.body, a
            assert a.error_type and is_lambda_error_body(a.json()), a


def test_any_content_type_is_accepted_like_lambda(system):
    """Lambda takes the payload as bytes whatever the Content-Type; an unlisted one is not a 415 in
    Chalice's own shape ({"Code": "UnsupportedMediaType"})."""
    for ct in ("text/html", "image/png", ""):
        a = signed_invoke(system.url, system.keys("admin"), "RuntimeAlpha", OK_BODY, headers={"Content-Type": ct})
        assert a.status == 200 and a.json()["response"] == "[alpha] world hello", (ct, a)


def test_deeply_nested_json_is_refused_not_a_server_error(system):
    """json.loads raises RecursionError (not ValueError) on deep nesting: it must not become a 500."""
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"prompt": "x", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        with Unchanged(system):
            a = signed_invoke(system.url, system.keys("admin"), "RuntimeAlpha", body)
        assert a.status < 500, a
        if a.status != 200:
            assert_lambda_error(a, 400, "InvalidRequestContentException")


def test_other_methods_on_the_invoke_route_get_a_lambda_error(system):
    path = invoke_path("RuntimeAlpha")
    with Unchanged(system):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            for headers in ({}, signed_headers(system.url, method, path, b"", system.keys("admin"))):
                a = send(system.url, method, path, b"", headers)
                assert 400 <= a.status < 500 and a.error_type, (method, a)
                assert is_lambda_error_body(a.json()), (method, a)


def test_expect_100_continue_is_answered_before_the_body_is_sent(system):
    """The front door buffers its answers into one send: a 100 Continue must still go out at once."""
    path = invoke_path("RuntimeAlpha")
    headers = signed_headers(system.url, "POST", path, OK_BODY, system.keys("admin"), {"Expect": "100-continue"})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + \
        f"Content-Length: {len(OK_BODY)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", system.port), timeout=10) as s, s.makefile("rb") as f:
        s.sendall(head.encode())
        assert f.readline().startswith(b"HTTP/1.1 100") and f.readline() == b"\r\n"   # before the body
        s.sendall(OK_BODY)
        status, _, body = parse_raw(f.read())
    assert status == 200 and json.loads(body)["response"] == "[alpha] world hello"
