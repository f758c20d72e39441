"""Raw HTTP for the security and reliability tests: send exactly the bytes we choose.

`signed_headers` signs with botocore's SigV4Auth but with a key and a timestamp of the
test's choosing; `send` uses http.client (no retries, no client-side validation);
`raw_exchange` writes bytes on a socket for what http.client refuses to send (CR/LF
inside a header value).
"""
from __future__ import annotations

import http.client
import json
import socket
from datetime import datetime, timezone
from urllib.parse import urlsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
ERROR_CODES = {  # Lambda's error codes mk1 answers with, and their status
    "AccessDeniedException": 403, "InvalidSignatureException": 403, "UnrecognizedClientException": 403,
    "MissingAuthenticationTokenException": 403, "InvalidRequestContentException": 400,
    "InvalidParameterValueException": 400, "IncompleteSignatureException": 400,
    "ResourceNotFoundException": 404, "RequestEntityTooLargeException": 413, "TooManyRequestsException": 429,
    "ValidationException": 400,
    "ServiceException": 503, "UnknownOperationException": 404,
}


def invoke_path(function: str, qualifier: str | None = None) -> str:
    path = f"/2015-03-31/functions/{function}/invocations"
    return path + (f"?Qualifier={qualifier}" if qualifier is not None else "")


def signed_headers(url: str, method: str, path: str, body: bytes, keys: tuple[str, str],
                   headers: dict | None = None, when: datetime | None = None,
                   service: str = "lambda", region: str = REGION) -> dict[str, str]:
    """Headers (Host, X-Amz-Date, X-Amz-Content-SHA256?, Authorization, + `headers`) signing the request."""
    req = AWSRequest(method=method, url=url.rstrip("/") + path, data=body, headers=dict(headers or {}))
    signer = SigV4Auth(Credentials(*keys), service, region)
    req.context["timestamp"] = (when or datetime.now(timezone.utc)).strftime(SIGV4_TIMESTAMP)
    signer._modify_request_before_signing(req)
    canonical = signer.canonical_request(req)
    signature = signer.signature(signer.string_to_sign(req, canonical), req)
    signer._inject_signature_to_request(req, signature)
    out = dict(req.headers.items())
    out.setdefault("Host", urlsplit(url).netloc)
    return out


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def error_type(self) -> str | None:
        return self.headers.get("x-amzn-errortype")

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.error_type}, {self.body[:300]!r})"


def send(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
         timeout: float = 60) -> Answer:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if not any(k.lower() == "host" for k in hdrs):
            hdrs["Host"] = parts.netloc
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def signed_invoke(url: str, keys: tuple[str, str], function: str, body: bytes, qualifier: str | None = None,
                  headers: dict | None = None, when: datetime | None = None, timeout: float = 60) -> Answer:
    path = invoke_path(function, qualifier)
    return send(url, "POST", path, body, signed_headers(url, "POST", path, body, keys, headers, when), timeout)


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Write `data`, read until the server closes (or the timeout); the raw answer bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def parse_raw(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith(b"HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


# AWS's body per error: whether it carries "Type", and whether its text is "message" or "Message"
# (recorded against AWS; see tests/conformance/ and chalicelib/errors.py).
BODY_SHAPE = {"ResourceNotFoundException": (True, "Message"), "ServiceException": (True, "Message"),
              "AccessDeniedException": (False, "Message"), "RequestEntityTooLargeException": (False, "Message"),
              "ValidationException": (False, "message"), "InvalidSignatureException": (False, "message"),
              "UnrecognizedClientException": (False, "message"), "IncompleteSignatureException": (False, "message"),
              "MissingAuthenticationTokenException": (False, "message")}


def is_lambda_error_body(body: dict) -> bool:
    """One of AWS's Lambda error bodies: a "message" or "Message", maybe "Type" (and a 429's fields)."""
    keys = set(body)
    return keys <= {"Type", "message", "Message", "Reason", "retryAfterSeconds"} and \
        any(isinstance(body.get(k), str) for k in ("message", "Message")) and \
        body.get("Type", "User") in ("User", "Service")


def assert_lambda_error(a: Answer, status: int, code: str, message_part: str | None = None) -> dict:
    """Lambda's error shape: the status, x-amzn-ErrorType, a JSON body with AWS's keys for that error."""
    assert a.status == status, a
    assert a.error_type == code, a
    assert a.headers.get("content-type", "").startswith("application/json"), a
    body = a.json()
    typed, key = BODY_SHAPE.get(code, (True, "message"))
    assert (body.get("Type") in ("User", "Service")) if typed else "Type" not in body, a
    assert isinstance(body.get(key), str), a
    if message_part is not None:
        assert message_part in body[key], a
    return body
