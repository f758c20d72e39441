"""One connection's requests: the embedded server's request handler (TCP_NODELAY, lean parsing,
bounded bodies and time; server.py's docstring has the design)."""
from __future__ import annotations

import io
import logging
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from chalice.local import ChaliceRequestHandler

from chalicelib.edge import views
from chalicelib.edge.answers import error_response
from chalicelib.edge.bounds import (ANSWER_SECONDS, LINGER_SECONDS, REQUEST_SECONDS, TICK_SECONDS, _alive,
                                    _Timed, _timeval, _Waited)
from chalicelib.edge.gateway import LeanGateway
from chalicelib.edge.request_parse import LeanRequestParsing
from chalicelib.errors import Mk1Error, UnknownOperation
from chalicelib.invoke_url import UrlAnswer, is_url_host
from chalicelib.request import HttpRequest

log = logging.getLogger("mk1.server")
_date: tuple = (None, "")   # (epoch second, its HTTP date), shared by the front door's threads


class Handler(LeanRequestParsing, ChaliceRequestHandler):
    disable_nagle_algorithm = True   # STACK-NOTES: 44 ms -> 0.7 ms per keep-alive request
    # Buffered: an answer (status line, headers, body) goes out in one send when http.server
    # flushes after the request, not two or three; every socket call gives up the GIL, and
    # getting it back behind the dispatcher's other threads costs up to a switch interval.
    wbufsize = 1 << 16
    waited = False   # the connection went silent between requests: the server pools it

    def __init__(self, request, client_address, server, app_object, config) -> None:
        # ChaliceRequestHandler's, with the lean gateway (gateway.py) in place of LocalGateway.
        self.local_gateway = LeanGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def setup(self) -> None:
        """StreamRequestHandler's (TCP_NODELAY, an 8 KB buffered reader, our buffered writer), with
        the kernel's timeouts set once for the connection and its reads and writes in _Timed."""
        sock = self.connection = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, self.disable_nagle_algorithm)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(TICK_SECONDS))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(ANSWER_SECONDS))
        places = self.server.stall_places
        self._in, self._out = _Timed(sock, "rb", REQUEST_SECONDS, places), _Timed(sock, "wb", ANSWER_SECONDS, places)
        self.rfile = io.BufferedReader(self._in)   # io.DEFAULT_BUFFER_SIZE, as makefile("rb", -1)
        self.wfile = io.BufferedWriter(self._out, self.wbufsize)

    def handle_one_request(self) -> None:
        reader = self._in
        reader.deadline, reader.waiting = None, True   # a new request: its clock starts at its first bytes
        try:
            # Waits for the request's first bytes into the reader's buffer (no call at all when they
            # are there already): a silence here has consumed nothing, so the connection can be pooled.
            self.rfile.peek(1)
        except _Waited:
            self.close_connection = self.waited = True
            return
        finally:
            reader.waiting = False
        try:
            super().handle_one_request()
        except Mk1Error as refused:   # its framing (request_parse.py), before the app saw it
            self._refuse(refused)

    def _refuse(self, err: Mk1Error) -> None:
        """Answers a request refused at the front door in Lambda's shape (answers.error_response,
        with a request id as AWS's answers have), then closes: what follows on the connection (an
        unread or undecodable body) can no longer be told from a next request."""
        self.close_connection = True
        resp = error_response(err, str(uuid.uuid4()))
        try:
            self._send_http_response(resp.status, {**resp.headers, "Connection": "close"}, resp.body)
            self.wfile.flush()
            self._linger()
        except OSError:
            pass   # the client is gone: nothing more to say

    def _linger(self) -> None:
        """Half-closes, then reads and drops what the client is still sending (a body it was not
        asked for), for LINGER_SECONDS at most: a close with unread bytes sends a reset, and the
        client's kernel then drops the answer it has not yet read. Memory stays flat (one buffer)."""
        sock = self.connection
        sock.shutdown(socket.SHUT_WR)
        scratch = memoryview(bytearray(1 << 16))
        end = time.monotonic() + LINGER_SECONDS
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv_into(scratch):
                return

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()   # the client waits for this before it sends the body
        return ok

    def _generic_handle(self) -> None:
        if is_url_host(self.headers.get("Host", "")):
            return self._function_url()
        views.CONNECTION.raw_path = self.path
        views.CONNECTION.alive = lambda: _alive(self.connection)
        after: list = []
        views.CONNECTION.later = after.append
        try:
            super()._generic_handle()
            self.wfile.flush()   # the answer goes out before the bookkeeping it does not wait for
        finally:
            views.CONNECTION.later = None
            for fn in after:     # run even if the client hung up: every usage record gets written
                try:
                    fn()
                except Exception:
                    log.exception("bookkeeping after an answer failed")

    def _function_url(self) -> None:
        """A function URL's request (invoke_url.py): any path and method, answered as Lambda answers it."""
        headers, body = self._parse_payload()
        path, _, query = self.path.partition("?")
        after: list = []
        req = HttpRequest(method=self.command, raw_path=path,
                          query=parse_qs(query, keep_blank_values=True) if query else {},
                          headers={k.lower(): v for k, v in headers.items()}, body=body or b"",
                          alive=lambda: _alive(self.connection), later=after.append)
        try:
            try:
                answer = views.function_url(req, self.headers.get("Host", ""))
            except Exception:
                log.exception("function URL request failed")
                answer = UrlAnswer(500, [("Content-Type", "application/json")], b'{"Message":"Internal Server Error"}')
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            self.wfile.flush()
        finally:
            for fn in after:   # run even if the client hung up: every usage record gets written
                try:
                    fn()
                except Exception:
                    log.exception("bookkeeping after an answer failed")

    def _send_error_response(self, error) -> None:
        # Chalice's own refusals (no such route) in Lambda's shape, made where every answer is made.
        err = UnknownOperation(f"Unknown operation: {self.command} {self.path.split('?')[0][:200]}")
        if error.CODE != 403:
            err.status = error.CODE
        resp = error_response(err)
        self._send_http_response(resp.status, resp.headers, resp.body)

    # The parent binds do_* to its own _generic_handle at class creation: rebind to ours.
    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def log_message(self, fmt, *args) -> None:
        if log.isEnabledFor(logging.DEBUG):   # send_response logs every answer: format only if shown
            log.debug("%s %s", self.address_string(), fmt % args)

    def send_response(self, code, message=None) -> None:
        """http.server's, without its Server header (Python's version; Lambda's answers carry
        none): every header of an answer is parsed by the client, ~10 us each for boto3."""
        self._out.deadline = None   # an answer's clock starts at its own first send (not a 100 Continue's)
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def date_time_string(self, timestamp=None) -> str:
        """The Date header, made once a second (email.utils.formatdate: ~5 us an answer)."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        global _date
        now, cached = int(time.time()), _date
        if cached[0] != now:
            cached = _date = (now, super().date_time_string(now))
        return cached[1]
