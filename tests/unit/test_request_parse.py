"""The front door's header parsing gives what http.client.parse_headers gives, for any block."""
import http.client
import io
import random

import pytest

from chalicelib.edge.request_parse import as_dict, parse_headers

BOTO3 = (b"Host: 127.0.0.1:8000\r\nAccept-Encoding: identity\r\nUser-Agent: Boto3/1.44.8 md/Botocore#1.44.8\r\n"
         b"X-Amz-Date: 20261201T154000Z\r\nX-Amz-Content-SHA256: UNSIGNED-PAYLOAD\r\n"
         b"Authorization: AWS4-HMAC-SHA256 Credential=AKIA/20261201/us-east-1/lambda/aws4_request, "
         b"SignedHeaders=host;x-amz-date, Signature=0123\r\nContent-Length: 32\r\n\r\n")

ODD = [
    BOTO3,
    b"\r\n", b"\n", b"",
    b"A: 1\nB:2\n\n",                                   # bare LFs
    b"A:   spaced value   \r\n\r\n",                    # trailing blanks kept, leading dropped
    b"A:\t\ttabbed\r\n\r\n", b"Empty:\r\n\r\n",
    b"X: Bogus\rX-Injected: 1\r\n\r\n",                 # a bare CR inside a line
    b"Folded: one\r\n two\r\n\tthree\r\n\r\n",          # continuation lines
    b" leading: space\r\nA: 1\r\n\r\n",
    b"No colon here\r\nA: 1\r\n\r\n",                   # not a header: the rest is body
    b"From someone@example.com\r\nA: 1\r\n\r\n",
    b"Dup: 1\r\nDup: 2\r\ndup: 3\r\n\r\n",
    b"Name With Space: x\r\n\r\n", b":no-name\r\n\r\n",
    b"Latin: caf\xe9 \xff\r\n\r\n", b"Nul: a\x00b\r\n\r\n",
    b"A: 1\r\nB: 2\r\n",                                # cut short: no blank line
    b"A: 1\r\r\n\r\n",
]


def _parsed(parse, raw: bytes):
    try:
        msg = parse(io.BytesIO(raw))
    except Exception as e:
        return ("error", type(e).__name__)
    return (msg.items(), msg.get_payload(), [type(d).__name__ for d in msg.defects], msg.get("a"))


@pytest.mark.parametrize("raw", ODD)
def test_the_same_message_as_http_client(raw):
    assert _parsed(parse_headers, raw) == _parsed(http.client.parse_headers, raw)


def test_the_same_limits():
    too_long = b"A: " + b"x" * 70000 + b"\r\n\r\n"
    too_many = b"".join(b"H%d: v\r\n" % i for i in range(150)) + b"\r\n"
    for raw in (too_long, too_many):
        assert _parsed(parse_headers, raw) == _parsed(http.client.parse_headers, raw)
        assert _parsed(parse_headers, raw)[0] == "error"


def test_random_blocks_parse_the_same():
    rng = random.Random(7)
    alphabet = [b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\xe9", b"(", b"0"]
    for _ in range(3000):
        lines = []
        for _ in range(rng.randint(0, 6)):
            name = b"".join(rng.choice(alphabet[:4] + [b"x"]) for _ in range(rng.randint(0, 6)))
            value = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            lines.append(name + b":" + value + rng.choice([b"\r\n", b"\n"]))
        raw = b"".join(lines) + rng.choice([b"\r\n", b"\n", b""])
        assert _parsed(parse_headers, raw) == _parsed(http.client.parse_headers, raw), raw


def test_a_plain_block_skips_the_email_package(monkeypatch):
    import email.parser

    class Refuse:
        def __init__(self, *a, **k):
            raise AssertionError("the email package was used")
    expected = _parsed(http.client.parse_headers, BOTO3)
    monkeypatch.setattr(email.parser, "Parser", Refuse)
    assert _parsed(parse_headers, BOTO3) == expected


@pytest.mark.parametrize("raw", ODD)
def test_headers_as_dict_as_chalice_makes_it(raw):
    """chalice.local passes dict(self.headers) to its gateway: as_dict gives the same dict."""
    try:
        msg = http.client.parse_headers(io.BytesIO(raw))
    except Exception:
        return
    assert list(as_dict(msg).items()) == list(dict(msg).items())
