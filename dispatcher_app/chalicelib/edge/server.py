"""Serves the Chalice app embedded (threaded, TCP_NODELAY) with a Dispatcher attached.

`python -m chalicelib.edge.server` runs the dispatcher until SIGINT/SIGTERM.
"""
from __future__ import annotations

import gc
import json
import logging
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer, ThreadedHTTPServer, create_local_server

from my_mk1_homework import settings as settings_mod

from chalicelib.edge import views
from chalicelib.edge.gateway import LeanGateway
from chalicelib.edge.request_parse import LeanRequestParsing

APP_DIR = Path(__file__).resolve().parents[2]   # dispatcher_app/
log = logging.getLogger("mk1.server")
_date: tuple = (None, "")   # (epoch second, its HTTP date), shared by the front door's threads


def _alive(sock: socket.socket) -> bool:
    """False once the client has closed its end. A non-blocking peek needs no select(), which
    fails for descriptors above 1023 — a thousand waiting callers get there."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return True          # nothing to read: still connected
    except OSError:
        return False


class Handler(LeanRequestParsing, ChaliceRequestHandler):
    disable_nagle_algorithm = True   # STACK-NOTES: 44 ms -> 0.7 ms per keep-alive request
    # Buffered: an answer (status line, headers, body) goes out in one send when http.server
    # flushes after the request, not two or three; every socket call gives up the GIL, and
    # getting it back behind the dispatcher's other threads costs up to a switch interval.
    wbufsize = 1 << 16

    def __init__(self, request, client_address, server, app_object, config) -> None:
        # ChaliceRequestHandler's, with the lean gateway (gateway.py) in place of LocalGateway.
        self.local_gateway = LeanGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()   # the client waits for this before it sends the body
        return ok

    def _generic_handle(self) -> None:
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

    def _send_error_response(self, error) -> None:
        # Chalice's own refusals (no such route) in Lambda's shape, like every other error.
        status = error.CODE if error.CODE != 403 else 404
        body = json.dumps({"Type": "User", "message": f"Unknown operation: {self.command} "
                                                      f"{self.path.split('?')[0][:200]}"}).encode()
        self._send_http_response(status, {"x-amzn-ErrorType": "UnknownOperationException",
                                          "Content-Type": "application/json"}, body)

    # The parent binds do_* to its own _generic_handle at class creation: rebind to ours.
    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def log_message(self, fmt, *args) -> None:
        if log.isEnabledFor(logging.DEBUG):   # send_response logs every answer: format only if shown
            log.debug("%s %s", self.address_string(), fmt % args)

    def send_response(self, code, message=None) -> None:
        """http.server's, without its Server header (Python's version; Lambda's answers carry
        none): every header of an answer is parsed by the client, ~10 us each for boto3."""
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


class Server(ThreadedHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def load_app():
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    import app as chalice_app  # dispatcher_app/app.py
    return chalice_app.app


class EmbeddedServer:
    """Binds its port when made, serves once started with a dispatcher: the port is held before
    the dispatcher's start opens connections and Runtime API endpoints of its own (on ports the
    kernel picks, which can be this one if it is still free: a restart saw EADDRINUSE)."""

    def __init__(self, host: str, port: int):
        app = load_app()
        create_local_server(app, Config(), host, port)  # makes current_request per-thread
        self.dev = LocalDevServer(app, Config(), host, port, handler_cls=Handler, server_cls=Server)
        self.dispatcher = None
        self.url = f"http://{host}:{self.dev.server.server_address[1]}"
        self._thread = threading.Thread(target=self.dev.server.serve_forever, daemon=True, name="http")

    def start(self, dispatcher) -> "EmbeddedServer":
        views.attach(dispatcher)
        self.dispatcher = dispatcher
        self._thread.start()
        return self

    def close(self) -> None:
        """Not started: give the port back."""
        self.dev.server.server_close()

    def stop(self) -> None:
        self.dev.server.shutdown()
        self.dev.server.server_close()
        self.dispatcher.shutdown()


def main() -> int:
    from chalicelib.compose import Dispatcher
    s = settings_mod.load()
    # Many threads hand work to each other here (HTTP, pump, Runtime API): a woken thread waits
    # for the GIL up to the switch interval (5 ms by default), which idles a freed slot.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=s.MK1_LOG_LEVEL, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # botocore logs whole responses at DEBUG (Secrets Manager's answer holds the users' secret
    # keys): whatever MK1_LOG_LEVEL says, the AWS SDK never logs below INFO.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    try:
        server = EmbeddedServer(s.MK1_DISPATCHER_HOST, s.MK1_DISPATCHER_PORT)
    except OSError as e:
        log.error("cannot listen on %s:%s: %s (set MK1_DISPATCHER_PORT)", s.MK1_DISPATCHER_HOST,
                  s.MK1_DISPATCHER_PORT, e)
        return 2
    try:
        dispatcher = Dispatcher(s).start()
    except Exception as e:
        log.error("the dispatcher could not start: %s (is the AWS endpoint %s up and provisioned?)",
                  e, s.aws_endpoint)
        server.close()
        return 2
    server.start(dispatcher)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # What start-up built (botocore's service models, Chalice's app, the clients) lives as long as
    # the process: freeze it out of the collector, so a full collection under load walks only the
    # calls' objects (walking all of it paused the dispatcher 70-150 ms, once 1.6 s, per full
    # collection in the 1,000-call benchmark; none over 10 ms after the freeze).
    gc.collect()
    gc.freeze()
    log.info("dispatcher on %s (backend %s)", server.url, dispatcher.backend.name)
    stop.wait()
    log.info("stopping: draining containers, queues and usage records")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
