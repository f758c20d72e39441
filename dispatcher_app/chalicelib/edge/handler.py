"""One connection's requests: the embedded server's request handler (TCP_NODELAY, lean parsing,
bounded bodies and time; server.py's docstring has the design)."""
from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote

from chalice.local import ChaliceRequestHandler

from chalicelib.edge import event_stream, views
from chalicelib.edge.answers import error_response, tail, to_http
from chalicelib.edge.bounds import (ANSWER_SECONDS, LINGER_SECONDS, REQUEST_SECONDS, TICK_SECONDS, _alive,
                                    _Timed, _timeval, _Waited)
from chalicelib.edge.request_parse import LeanRequestParsing
from chalicelib.errors import Mk1Error, ServiceUnavailable, UnknownOperation
from chalicelib.invoke_url import UrlAnswer, is_url_host
from chalicelib.model import DryRunPassed, ResponseStream
from chalicelib.request import HttpRequest

log = logging.getLogger("mk1.server")
STREAM_PATH = re.compile(r"^/2021-11-15/functions/([^/]+)/response-streaming-invocations/?$")
_date: tuple = (None, "")   # (epoch second, its HTTP date), shared by the front door's threads


class Handler(LeanRequestParsing, ChaliceRequestHandler):
    disable_nagle_algorithm = True   # STACK-NOTES: 44 ms -> 0.7 ms per keep-alive request
    # Buffered: an answer (status line, headers, body) goes out in one send when http.server
    # flushes after the request, not two or three; every socket call gives up the GIL, and
    # getting it back behind the dispatcher's other threads costs up to a switch interval.
    wbufsize = 1 << 16
    waited = False   # the connection went silent between requests: the server pools it

    def __init__(self, request, client_address, server, app_object, config) -> None:
        # ChaliceRequestHandler's, with the server's one lean gateway (gateway.py) in place of a
        # LocalGateway per connection.
        self.local_gateway = server.gateway(app_object, config)
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
        streaming = STREAM_PATH.match(self.path.partition("?")[0]) if self.command == "POST" else None
        if streaming is not None:
            return self._invoke_stream(unquote(streaming.group(1)))
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
            # A kept thread (threads.py) waits for its next connection with what its last request
            # left in thread-locals: the request, its body, this handler. It lets go of them here.
            views.CONNECTION.__dict__.clear()
            self.local_gateway._app_object.current_request = None

    def _request(self, after: list) -> HttpRequest:
        headers, body = self._parse_payload()
        path, _, query = self.path.partition("?")
        return HttpRequest(method=self.command, raw_path=path,
                           query=parse_qs(query, keep_blank_values=True) if query else {},
                           headers={k.lower(): v for k, v in headers.items()}, body=body or b"",
                           alive=lambda: _alive(self.connection), later=after.append)

    @staticmethod
    def _bookkeeping(after: list) -> None:
        for fn in after:   # run even if the client hung up: every usage record gets written
            try:
                fn()
            except Exception:
                log.exception("bookkeeping after an answer failed")

    def _function_url(self) -> None:
        """A function URL's request (invoke_url.py): any path and method, answered as Lambda answers it."""
        after: list = []
        req = self._request(after)
        host = self.headers.get("Host", "")
        try:
            if views.function_url_mode(host) == "RESPONSE_STREAM":
                return self._function_url_stream(req, host)
            try:
                answer = views.function_url(req, host)
            except Exception:
                log.exception("function URL request failed")
                answer = UrlAnswer(500, [("Content-Type", "application/json")], b'{"Message":"Internal Server Error"}')
            self._url_answer(answer)
        finally:
            self._bookkeeping(after)

    def _url_answer(self, answer: UrlAnswer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        self.wfile.flush()

    # -- streamed answers: the call runs on a thread of its own, this one writes what it streams --
    def _streamed_call(self, run) -> tuple[ResponseStream, dict]:
        stream, box = ResponseStream(), {}

        def work() -> None:
            try:
                box["result"] = run(stream)
            except BaseException as e:   # answered by this thread, in Lambda's shape
                box["error"] = e
            finally:
                stream.put("end")
        threading.Thread(target=work, daemon=True, name="stream-call").start()
        return stream, box

    def _chunked_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()   # now: a streamed answer reaches its caller as the function writes it

    def _last_chunk(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _function_url_stream(self, req: HttpRequest, host: str) -> None:
        """A RESPONSE_STREAM function URL: chunked HTTP as the function streams. A streamed answer of
        type application/vnd.awslambda.http-integration-response starts with a JSON prelude (statusCode,
        headers, cookies) and 8 NUL bytes; any other is a 200 of the runtime's content type. A function
        that answers buffered (or a refusal) is answered as a BUFFERED URL answers."""
        stream, box = self._streamed_call(lambda s: views.function_url(req, host, s))
        started, prelude, pending, rid, content_type = False, False, b"", "", "application/octet-stream"
        try:
            while True:
                kind, value = stream.get()
                if kind == "start":
                    rid = value["request_id"]   # type: ignore[index]
                elif kind == "type":
                    prelude = str(value).startswith("application/vnd.awslambda.http-integration-response")
                    content_type = str(value)
                elif kind == "chunk" and not started and prelude:
                    pending += value   # type: ignore[operator]
                    cut = pending.find(b"\0" * 8)
                    if cut < 0:
                        continue
                    head = json.loads(pending[:cut] or b"{}")
                    headers = [(str(k), str(v)) for k, v in (head.get("headers") or {}).items()]
                    headers += [("Set-Cookie", str(c)) for c in head.get("cookies") or []]
                    self._chunked_head(int(head.get("statusCode", 200)), headers + [("x-amzn-RequestId", rid)] +
                                       views.function_url_cors(host, req.headers.get("origin")))
                    started = True
                    self._chunk(pending[cut + 8:])
                elif kind == "chunk":
                    if not started:
                        self._chunked_head(200, [("Content-Type", content_type), ("x-amzn-RequestId", rid)] +
                                           views.function_url_cors(host, req.headers.get("origin")))
                        started = True
                    self._chunk(value)   # type: ignore[arg-type]
                elif kind == "end":
                    break
            if started:
                self._last_chunk()
            elif "result" in box:
                self._url_answer(box["result"])
            else:
                log.error("function URL stream failed", exc_info=box.get("error"))
                self._url_answer(UrlAnswer(500, [("Content-Type", "application/json")],
                                           b'{"Message":"Internal Server Error"}'))
        except OSError:
            self.close_connection = True   # the caller hung up; the call finishes and is recorded

    def _invoke_stream(self, name: str) -> None:
        """InvokeWithResponseStream: 200 and an event stream of PayloadChunk as the function writes,
        then InvokeComplete (ErrorCode, ErrorDetails, LogResult). A function that answers buffered
        sends its answer as one PayloadChunk; a refusal before any of it is Invoke's error answer."""
        after: list = []
        req = self._request(after)
        stream, box = self._streamed_call(lambda s: views.invoke_stream(req, name, s))
        started, meta = False, {"version": "$LATEST", "request_id": ""}
        try:
            while True:
                kind, value = stream.get()
                if kind == "start":
                    meta = value   # type: ignore[assignment]
                elif kind == "chunk":
                    if not started:
                        self._event_stream_head(meta)
                        started = True
                    self._chunk(event_stream.payload_chunk(value))   # type: ignore[arg-type]
                elif kind == "end":
                    break
            result, error = box.get("result"), box.get("error")
            if not started and (error is not None or isinstance(result, DryRunPassed)):
                if error is not None and not isinstance(error, Mk1Error):
                    log.error("InvokeWithResponseStream failed", exc_info=error)
                resp = to_http(result) if error is None else error_response(
                    error if isinstance(error, Mk1Error) else ServiceUnavailable(f"the call failed: {error}"),
                    getattr(error, "request_id", None) or meta["request_id"])
                self._send_http_response(resp.status, resp.headers, resp.body)
                self.wfile.flush()
                return
            if not started:
                self._event_stream_head(meta)
            if error is not None:
                self._chunk(event_stream.invoke_complete("ServiceException", str(error)))
            else:
                if not stream.streamed and result.payload and not result.function_error:
                    self._chunk(event_stream.payload_chunk(result.payload))
                code = details = None
                if result.function_error:
                    code, details = "Unhandled", result.payload.decode("utf-8", "replace")
                self._chunk(event_stream.invoke_complete(
                    code, details, tail(result.log_lines) if result.log_lines is not None else None))
            self._last_chunk()
        except OSError:
            self.close_connection = True
        finally:
            self._bookkeeping(after)

    def _event_stream_head(self, meta: dict) -> None:
        self._chunked_head(200, [("Content-Type", event_stream.CONTENT_TYPE),
                                 ("X-Amz-Executed-Version", meta["version"]), ("x-amzn-RequestId", meta["request_id"])])

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
