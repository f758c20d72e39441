"""The Runtime API's lean HTTP handling, over a real loopback socket (the host is a stub)."""
import socket

from chalicelib.execute.runtime_api import PREFIX, NextInvocation, RuntimeEndpoint


class Host:
    def __init__(self):
        self.answers, self.flushed = [], 0

    def next_invocation(self, send=None):
        return NextInvocation("rid-1", b'{"prompt": "x"}', 123, "arn:fn", "Root=1")

    def arrived(self, request_id):
        return request_id == "rid-1"

    def invocation_response(self, request_id, body):
        self.answers.append(("response", request_id, body))
        return request_id == "rid-1"

    def invocation_error(self, request_id, body, error_type):
        self.answers.append((error_type, request_id, body))
        return True

    def init_error(self, body, error_type):
        self.answers.append(("init", error_type, body))

    def flush_answers(self):
        self.flushed += 1


def _read_response(f):
    status = f.readline().decode()
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", 0)))
    return int(status.split()[1]), headers, body


def test_keep_alive_cycle_headers_and_errors():
    host = Host()
    ep = RuntimeEndpoint(host).start()
    try:
        port = int(ep.address.split(":")[1])
        with socket.create_connection(("127.0.0.1", port)) as s, s.makefile("rb") as f:
            s.sendall(f"GET {PREFIX}/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, headers, body = _read_response(f)
            assert status == 200 and body == b'{"prompt": "x"}'
            assert headers["lambda-runtime-aws-request-id"] == "rid-1"
            assert headers["lambda-runtime-deadline-ms"] == "123"
            # same connection; header names in any case; Expect: 100-continue answered first
            s.sendall(f"POST {PREFIX}/invocation/rid-1/error HTTP/1.1\r\ncontent-LENGTH: 2\r\n"
                      f"LAMBDA-Runtime-Function-Error-Type: Oops\r\nExpect: 100-continue\r\n\r\n{{}}".encode())
            assert f.readline().startswith(b"HTTP/1.1 100") and f.readline() == b"\r\n"
            assert _read_response(f)[0] == 202
            s.sendall(f"POST {PREFIX}/invocation/other/response HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode())
            assert _read_response(f)[0] == 400
            # flush_answers runs after the 200 is written and the answer is handled after its 202, so
            # only the answer to a later request on this connection (served by the same thread)
            # proves they ran: checking them at once races.
            assert host.flushed == 1 and host.answers == [("Oops", "rid-1", b"{}")]
            s.sendall(b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n")
            status, headers, _ = _read_response(f)
            assert status == 404 and headers["connection"] == "close" and f.read() == b""
        with socket.create_connection(("127.0.0.1", port)) as s, s.makefile("rb") as f:
            s.sendall(b"NONSENSE\r\n\r\n")
            assert _read_response(f)[0] == 400 and f.read() == b""
    finally:
        ep.stop()
