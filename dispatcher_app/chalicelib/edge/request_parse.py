"""The front door's request parsing: http.server's, without the email package for plain headers.

http.server reads a request's header block with `http.client.parse_headers`, which hands it to
the email package's feed parser: ~45 us of the GIL per request here, for a dozen lines of
`Name: value`. A block whose every line is plain (a token name, a colon, a value without CR or
LF inside) is read into the same HTTPMessage directly, the way the feed parser reads such a line
(compat32: the value without leading blanks and the line end); anything else (continuation lines,
bare CRs, a line that is no header, a block cut short) goes to the email package as before, so
odd input is parsed exactly as it was. tests/unit/test_request_parse.py holds the two to the same
answers.
"""
from __future__ import annotations

import email.parser
import http.client
import re
from http import HTTPStatus

# What the feed parser reads as one header line and nothing more (its headerRE, minus the
# continuation and "From " cases, with no CR or LF before the line end).
_PLAIN = re.compile(rb"[!-9;-~]+:[^\r\n]*\r?\n")


def parse_headers(rfile) -> http.client.HTTPMessage:
    """http.client.parse_headers(rfile): the same limits, errors and message."""
    lines = http.client._read_headers(rfile)   # LineTooLong / HTTPException, as in parse_headers
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


class LeanRequestParsing:
    """BaseHTTPRequestHandler.parse_request (Python 3.11), reading headers with parse_headers above;
    ChaliceRequestHandler._parse_payload with as_dict above."""

    def _parse_payload(self):
        headers = as_dict(self.headers)
        length = int(self.headers.get("content-length", "0"))
        return headers, (self.rfile.read(length) if length > 0 else None)

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
            self.headers = parse_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
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
