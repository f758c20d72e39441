"""The front door's request parsing: http.server's, without the email package for plain headers.

http.server reads a request's header block with `http.client.parse_headers`, which hands it to
the email package's feed parser: ~45 us of the GIL per request here, for a dozen lines of
`Name: value`. A block whose every line is plain (a token name, a colon, a value without CR or
LF inside) is read into the same HTTPMessage directly, the way the feed parser reads such a line
(compat32: the value without leading blanks and the line end); anything else (continuation lines,
bare CRs, a line that is no header, a block cut short) goes to the email package as before, so
odd input is parsed exactly as it was. tests/unit/test_request_parse.py holds the two to the same
answers.

The body's framing is checked here, before anything reads it or the app sees the request
(`framing`): a Content-Length that is not a plain decimal number, or both Content-Length and
Transfer-Encoding (a request-smuggling shape), or a transfer coding other than chunked: 400; a
declared length over what Lambda takes: 413, without reading the body. A chunked body is decoded
(`read_chunked`), under the same limit, so none of its bytes are read as the next request. A
request cut short (the client closed mid-header or mid-body) is not answered: nobody reads it.
"""
from __future__ import annotations

import email.parser
import http.client
import re
from http import HTTPStatus

from chalicelib.errors import InvalidRequestContent, RequestTooLarge
from chalicelib.request import SYNC_PAYLOAD_LIMIT

# What the feed parser reads as one header line and nothing more (its headerRE, minus the
# continuation and "From " cases, with no CR or LF before the line end).
_PLAIN = re.compile(rb"[!-9;-~]+:[^\r\n]*\r?\n")

# The largest body the front door reads. Lambda takes 6 MB (SYNC_PAYLOAD_LIMIT); the app checks
# the exact limit (request.py: its 413 carries the call's request id, and an Event call's 1 MB
# limit is its too). The front door refuses only what is plainly over, before reading it: a
# declared 256 MB is not read into memory to be refused afterwards.
MAX_BODY_BYTES = SYNC_PAYLOAD_LIMIT + 64 * 1024
TOO_LARGE = f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction operation"  # AWS's words
_LENGTH = re.compile(r"[0-9]{1,18}")              # 1*DIGIT (RFC 9110 8.6); int() also takes "+5", " 5", "5_0"
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")   # chunk-size = 1*HEXDIG (RFC 9112 7.1)
_MAX_CHUNK_LINE = 4096                            # a chunk-size line with its extensions, or a trailer line
CUT_SHORT = "the client closed the connection in the middle of its request"


def parse_headers(rfile) -> http.client.HTTPMessage:
    """http.client.parse_headers(rfile): the same limits, errors and message."""
    return parse_header_lines(http.client._read_headers(rfile))   # LineTooLong / HTTPException, as there


def parse_header_lines(lines: list[bytes]) -> http.client.HTTPMessage:
    """The message http.client.parse_headers makes of these lines (http.client._read_headers')."""
    block = lines[:-1]
    if lines[-1] == b"" or not all(_PLAIN.fullmatch(line) for line in block):
        text = b"".join(lines).decode("iso-8859-1")
        return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
    msg = http.client.HTTPMessage()
    for line in block:
        name, _, value = line.decode("iso-8859-1").partition(":")
        msg.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))
    msg.set_payload("")   # as the feed parser leaves it: no body after the blank line
    return msg


def as_dict(msg: http.client.HTTPMessage) -> dict[str, str]:
    """dict(msg), as chalice.local hands headers to its gateway, in one pass: dict() looks each
    name up again (msg[name]: a scan of every header, lower-casing each), ~150 lower() calls a
    request. Each name maps to the first value of its case-insensitive name, as msg[name] does."""
    first: dict[str, str] = {}
    out: dict[str, str] = {}
    for name, value in msg.items():
        out[name] = first.setdefault(name.lower(), value)
    return out


def framing(msg: http.client.HTTPMessage, version: str) -> int | None:
    """The body's length as the headers declare it, None for a chunked body; InvalidRequestContent
    (400) for framing that cannot be trusted, RequestTooLarge (413) for a length over MAX_BODY_BYTES.

    Lambda's shape for both (edge/server.py writes them): AWS's own front end refuses such framing
    before Lambda sees the request (not recorded against AWS); an SDK branches on x-amzn-ErrorType,
    and InvalidRequestContentException is Lambda's error for a request body it cannot read."""
    lengths, codings = [], []
    for name, value in msg.raw_items():   # one pass: a boto3 request has ~8 headers
        low = name.lower()
        if low == "content-length":
            lengths.append(value.strip(" \t"))
        elif low == "transfer-encoding":
            codings.append(value.strip(" \t").lower())
    if codings:
        # RFC 9112 6.1: Transfer-Encoding with Content-Length is refused (a smuggling shape), and a
        # body whose last coding is not chunked has no knowable end; HTTP/1.0 has no chunked.
        if lengths:
            raise InvalidRequestContent("A request must not carry both Content-Length and Transfer-Encoding")
        if codings != ["chunked"] or version < "HTTP/1.1":
            raise InvalidRequestContent(f"Transfer-Encoding {', '.join(codings)[:100]!r} is not supported: "
                                        f"send the body with a Content-Length, or chunked over HTTP/1.1")
        return None
    if not lengths:
        return 0
    if not _LENGTH.fullmatch(lengths[0]) or any(v != lengths[0] for v in lengths[1:]):
        raise InvalidRequestContent(f"Content-Length {lengths[0][:40]!r} is not a number of bytes "
                                    f"(one decimal number, 0 or more)")
    length = int(lengths[0])
    if length > MAX_BODY_BYTES:
        raise RequestTooLarge(TOO_LARGE)
    return length


def read_chunked(rfile, limit: int = MAX_BODY_BYTES) -> bytes:
    """A chunked body (RFC 9112 7.1) decoded, its trailer fields read and dropped. Over `limit`
    decoded bytes: RequestTooLarge before the chunk that crosses it is read; a malformed chunk
    line: InvalidRequestContent; the client gone mid-body: ConnectionAbortedError."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = _chunk_line(rfile)
        head = line.split(b";", 1)[0].strip(b" \t\r\n")   # chunk extensions are ignored
        if not _CHUNK_SIZE.fullmatch(head):
            raise InvalidRequestContent(f"Malformed chunk size line in a chunked body: {line[:40]!r}")
        size = int(head, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise RequestTooLarge(TOO_LARGE)
        data = rfile.read(size)
        if len(data) < size:
            raise ConnectionAbortedError(CUT_SHORT)
        parts.append(data)
        if _chunk_line(rfile) not in (b"\r\n", b"\n"):
            raise InvalidRequestContent("A chunk of a chunked body is longer than its size line says")
    for _ in range(http.client._MAXHEADERS):   # the trailer section, to its blank line
        if _chunk_line(rfile) in (b"\r\n", b"\n"):
            return b"".join(parts)
    raise InvalidRequestContent("Too many trailer fields after a chunked body")


def _chunk_line(rfile) -> bytes:
    line = rfile.readline(_MAX_CHUNK_LINE + 1)
    if not line.endswith(b"\n"):
        if len(line) > _MAX_CHUNK_LINE:
            raise InvalidRequestContent("A line of a chunked body is too long")
        raise ConnectionAbortedError(CUT_SHORT)
    return line


class LeanRequestParsing:
    """BaseHTTPRequestHandler.parse_request (Python 3.11), reading headers with parse_headers above
    and checking the body's framing (`framing`); ChaliceRequestHandler._parse_payload with as_dict
    above, reading the body as framed: its declared length, or chunked.

    A refused framing raises its Mk1Error out of parse_request / _parse_payload: the handler answers it
    (edge/server.py) and closes the connection."""

    body_length: int | None = 0   # framing()'s answer for the request being read

    def _parse_payload(self):
        headers = as_dict(self.headers)
        length = self.body_length
        if length is None:
            return headers, read_chunked(self.rfile) or None
        if length == 0:
            return headers, None
        body = self.rfile.read(length)
        if len(body) < length:   # cut short: there is no whole request to answer
            raise ConnectionAbortedError(CUT_SHORT)
        return headers, body

    def parse_request(self) -> bool:
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False
        if len(words) >= 3 and not self._read_version(words[-1]):
            return False
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request syntax (%r)" % requestline)
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad HTTP/0.9 request type (%r)" % command)
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")   # gh-87389, as http.server
        return self._read_headers()

    def _read_version(self, version: str) -> bool:
        try:
            if not version.startswith("HTTP/"):
                raise ValueError
            base_version_number = version.split("/", 1)[1]
            version_number = base_version_number.split(".")
            if len(version_number) != 2:
                raise ValueError
            if any(not c.isdigit() for c in version_number):
                raise ValueError("non digit in http version")
            if any(len(c) > 10 for c in version_number):
                raise ValueError("unreasonable length http version")
            version_number = int(version_number[0]), int(version_number[1])
        except (ValueError, IndexError):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request version (%r)" % version)
            return False
        if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        if version_number >= (2, 0):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                            "Invalid HTTP version (%s)" % base_version_number)
            return False
        self.request_version = version
        return True

    def _read_headers(self) -> bool:
        try:
            lines = http.client._read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        if lines[-1] == b"":   # the client closed before the blank line: no request to answer
            self.close_connection = True
            return False
        self.headers = parse_header_lines(lines)
        self.body_length = framing(self.headers, self.request_version)   # before a 100 Continue
        conntype = self.headers.get("Connection", "")
        if conntype.lower() == "close":
            self.close_connection = True
        elif conntype.lower() == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        if (expect.lower() == "100-continue" and self.protocol_version >= "HTTP/1.1"
                and self.request_version >= "HTTP/1.1"):
            if not self.handle_expect_100():
                return False
        return True
