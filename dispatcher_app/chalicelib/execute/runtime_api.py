"""The AWS Lambda Runtime API, served by mk1 to its containers.

Each container gets its own endpoint (a port of its own, and for network-less
Docker containers also a Unix socket), so a container can only ever fetch the
invocations of that container. TCP_NODELAY: without it every round trip pays
Nagle + delayed ACK (~44-88 ms, STACK-NOTES).
"""
from __future__ import annotations

import base64
import json
import os
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Protocol

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100    # AWS's: 6291556 bytes
STREAM_LIMIT = 200 * 1024 * 1024             # a streamed answer's limit (AWS: 200 MB)
STREAM_UNTHROTTLED = 6 * 1024 * 1024         # its first 6 MB go at full speed ...
STREAM_RATE = 2 * 1024 * 1024                # ... the rest at 2 MB/s


@dataclass
class NextInvocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    client_context: str | None = None


SENT = object()   # next_invocation(): nothing to write now; the answer is another thread's to send


Send = Callable[[NextInvocation | None], None]   # None: the container is stopping (410)


class RuntimeHost(Protocol):
    """What the endpoint needs from its container (implemented by containers.Container)."""

    # `send` answers this /next on its connection, from any thread. With no work yet the host keeps
    # it and returns SENT: this thread goes back to reading the connection, and the next call's own
    # thread sends its event (no thread waits for work, so none has to be woken to start a call).
    def next_invocation(self, send: Send | None = None) -> NextInvocation | object | None: ...
    def arrived(self, request_id: str) -> bool: ...          # then one of the next two
    def invocation_response(self, request_id: str, body: bytes) -> bool: ...
    def invocation_error(self, request_id: str, body: bytes, error_type: str) -> bool: ...
    def init_error(self, body: bytes, error_type: str) -> None: ...
    def restore_error(self, body: bytes) -> None: ...       # SnapStart: an after-restore hook failed
    def too_large(self, request_id: str) -> bool: ...        # after arrived(): an answer over the limit
    def flush_answers(self) -> None: ...


MAX_HEADERS = 100


class _Headers(dict):
    """Request headers by lower-cased name."""

    def get(self, name: str, default=None):  # type: ignore[override]
        return super().get(name.lower(), default)


def _chunks(rfile, trailers: dict[str, str]):
    """A chunked body's chunks as they arrive; its trailers into `trailers` (lower-case names)."""
    while True:
        line = rfile.readline(65537)
        if not line:
            return
        try:
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            return
        if size == 0:
            break
        data = rfile.read(size)
        rfile.readline()   # the chunk's CRLF
        yield data
    while True:
        line = rfile.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            return
        name, _, value = line.decode("latin-1").partition(":")
        trailers[name.strip().lower()] = value.strip()


class _Handler(BaseHTTPRequestHandler):
    """Every request of a warm cycle is on the path between one call's answer and the next call's
    start, so it is parsed and answered lean: each socket call releases the GIL and getting it back
    behind the dispatcher's other threads costs up to a switch interval (measured at the cap: a
    response written as headers then body took 0.35 ms mean, 1 ms at p90)."""
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "mk1-runtime-api"

    def log_message(self, *args) -> None:  # the container's own log is what matters
        pass

    @property
    def host(self) -> RuntimeHost:
        return self.server.runtime_host  # type: ignore[attr-defined]

    def parse_request(self) -> bool:
        # The runtime's requests are small and plain; http.server parses headers with the email
        # package (~0.1 ms a request here). Same checks that matter: the request line, the header
        # count and length, keep-alive, Expect: 100-continue.
        self.command = ""
        self.close_connection = True
        words = self.raw_requestline.decode("latin-1").rstrip("\r\n").split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self._status(400, "bad request line")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        while True:
            line = self.rfile.readline(65537)
            if len(line) > 65536 or len(headers) > MAX_HEADERS:
                self._status(431, "request headers too large")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive")
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}", f"Server: {self.server_version}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)   # one write

    def _status(self, status: int, message: str) -> None:
        self._reply(status, json.dumps({"errorMessage": message, "errorType": "InvalidRequest"}).encode(),
                    {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        if self.path != f"{PREFIX}/invocation/next":
            return self._status(404, f"unknown path {self.path}")
        inv = self.host.next_invocation(self._send_invocation)
        if inv is SENT:
            return
        self._send_invocation(inv)  # type: ignore[arg-type]
        if inv is not None:
            self.host.flush_answers()   # callers held back until this invocation went out

    def _send_invocation(self, inv: NextInvocation | None) -> None:
        if inv is None:  # the container is being stopped
            return self._status(410, "container is shutting down")
        headers = {"Content-Type": "application/json", "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                   "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                   "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
                   "Lambda-Runtime-Trace-Id": inv.trace_id}
        if inv.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        self._reply(200, inv.payload, headers)

    def do_POST(self) -> None:
        parts = self.path[len(PREFIX):].strip("/").split("/") if self.path.startswith(PREFIX) else []
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response" and \
                self.headers.get("lambda-runtime-function-response-mode", "").lower() == "streaming":
            return self._streamed(parts[1])
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_RESPONSE_BYTES:
            return self._too_large(length, parts)
        body = self.rfile.read(length) if length else b""
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "Unhandled")
        if parts == ["init", "error"]:
            self.host.init_error(body, error_type)
            return self._reply(202, b'{"status":"OK"}')
        if parts == ["restore", "error"]:
            self.host.restore_error(body)
            return self._reply(202, b'{"status":"OK"}')
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            if not self.host.arrived(parts[1]):
                return self._status(400, f"unknown or finished request id {parts[1]}")
            # The 202 first, then the answer is handled (the slot freed, the caller woken): woken
            # before it, the caller's thread and this one took turns at the GIL while it was sent.
            self._reply(202, b'{"status":"OK"}')
            if parts[2] == "response":
                self.host.invocation_response(parts[1], body)
            else:
                self.host.invocation_error(parts[1], body, error_type)
            return
        self._status(404, f"unknown path {self.path}")


    def _streamed(self, request_id: str) -> None:
        """A streamed answer: its chunks go on as they arrive (a chunked body, or one body), up to
        AWS's 200 MB, the first 6 MB at full speed and the rest at 2 MB/s
        (https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html); an error
        mid-stream comes in the trailers Lambda-Runtime-Function-Error-Type / -Body (base64)."""
        host = self.host
        known = host.stream_open(request_id, self.headers.get("content-type", "application/octet-stream"))
        sent, began = 0, time.monotonic()
        kept = True
        trailers: dict[str, str] = {}
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        for data in (_chunks(self.rfile, trailers) if chunked else
                     [self.rfile.read(int(self.headers.get("content-length") or 0))]):
            if not data or not known:
                continue
            sent += len(data)
            if sent > STREAM_LIMIT:
                if kept:
                    trailers.setdefault("lambda-runtime-function-error-type", "Function.ResponseSizeTooLarge")
                kept = False
                continue
            kept = host.stream_chunk(request_id, data) and kept
            if sent > STREAM_UNTHROTTLED:   # past the first 6 MB: 2 MB/s
                due = began + (sent - STREAM_UNTHROTTLED) / STREAM_RATE
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
        if not known or not host.arrived(request_id):
            return self._status(400, f"unknown or finished request id {request_id}")
        self._reply(202, b'{"status":"OK"}')
        error_type = trailers.get("lambda-runtime-function-error-type")
        if error_type:
            try:
                body = base64.b64decode(trailers.get("lambda-runtime-function-error-body", ""))
            except ValueError:
                body = b""
            host.invocation_error(request_id, body or json.dumps(
                {"errorType": error_type, "errorMessage": "the function's streamed answer failed"}).encode(), error_type)
        else:
            host.stream_done(request_id)

    def _too_large(self, length: int, parts: list[str]) -> None:
        """An answer over Lambda's limit: the caller gets Function.ResponseSizeTooLarge (AWS's answer),
        the body is read and dropped. An invocation's answer is acknowledged 202, not AWS's 413: the
        runtime client (awslambdaric) raises on a refused answer and its process exits, where the
        environment should stay warm for the next call."""
        while length > 0:
            length -= len(self.rfile.read(min(length, 1 << 20)) or b"x" * length)
        if len(parts) == 3 and parts[0] == "invocation" and self.host.arrived(parts[1]):
            self._reply(202, b'{"status":"OK"}')
            self.host.too_large(parts[1])
            return
        self._reply(413, json.dumps({"errorMessage": f"Exceeded maximum allowed payload size "
                                                     f"({MAX_RESPONSE_BYTES} bytes).",
                                     "errorType": "RequestEntityTooLarge"}).encode(),
                    {"Content-Type": "application/json"})


class _UnixHandler(_Handler):
    disable_nagle_algorithm = False  # TCP_NODELAY does not apply to AF_UNIX

    def address_string(self) -> str:
        return "unix"


class _Quiet:
    def handle_error(self, request, client_address) -> None:
        # A container killed mid-request resets its connection: expected, not news.
        pass


class _TCPServer(_Quiet, ThreadingHTTPServer):
    daemon_threads = True


class _UnixServer(_Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class RuntimeEndpoint:
    """One container's Runtime API endpoint on 127.0.0.1 (and optionally a Unix socket)."""

    def __init__(self, host: RuntimeHost, socket_path: Path | None = None, listener: socket.socket | None = None):
        """listener: a listening socket made elsewhere (a SnapStart restore's, whose address the
        environment already has); by default one is bound here on 127.0.0.1."""
        if listener is None:
            tcp = _TCPServer(("127.0.0.1", 0), _Handler)
        else:
            tcp = _TCPServer(listener.getsockname(), _Handler, bind_and_activate=False)
            tcp.socket.close()
            tcp.socket = listener
        self._servers = [tcp]
        self.socket_path = socket_path
        if socket_path is not None:
            socket_path.parent.mkdir(parents=True, exist_ok=True)
            if socket_path.exists():
                socket_path.unlink()
            self._servers.append(_UnixServer(str(socket_path), _UnixHandler))
            os.chmod(socket_path, 0o666)  # the container's non-root user must reach it
        for s in self._servers:
            s.runtime_host = host  # type: ignore[attr-defined]
        self.address = f"127.0.0.1:{self._servers[0].server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                          daemon=True, name=f"runtime-api-{self.address}")
                         for s in self._servers]

    def start(self) -> "RuntimeEndpoint":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()
        if self.socket_path is not None and self.socket_path.exists():
            self.socket_path.unlink()
