"""Serves the Chalice app embedded (threaded, TCP_NODELAY) with a Dispatcher attached.

`python -m chalicelib.edge.server` runs the dispatcher until SIGINT/SIGTERM.

A bounded front door. A connection that is moving a request is served on a thread of its own
(http.server's model, kept for the warm path: one blocking recv and one send a call, on one
thread), a thread kept from an earlier connection or made ahead (threads.py), not one started for
it; a connection that waits has no thread:

- Waiting connections: one silent for TICK_SECONDS between requests (a fresh one that sent
  nothing, a keep-alive one between calls) gives its thread up to the idle pool (`IdlePool`), one
  thread watching every waiting connection with one selector; with over half the threads taken, a
  fresh one that has sent nothing goes to the pool as it is accepted. Its next request gets it a
  thread again; its close costs that one thread a few microseconds; after IDLE_SECONDS the pool
  closes it. So however many idle connections close together, no thread wakes for them, and
  /health is answered at once (tests/security/test_front_door.py: 3,000 of them). Threads, each
  waiting for the GIL, were the cost: a thousand connection threads woken together by their
  clients' closes took seconds to end, and every other answer waited behind them.
- Threads: at most `Server.max_threads` connections on threads at once (MAX_THREADS, fewer when
  the descriptor limit is low). One more is answered 503 (ServiceException, Lambda's shape) by
  the accept loop itself and closed: no thread, no waiting. Not the listen backlog: a client
  there hangs in connect() (SYN retries, seconds each) with no answer.
- Stalls: a request silent for TICK_SECONDS mid-header or mid-body holds one of MAX_STALLED
  places while it waits; with none free it is cut off. Its header and body must be in within
  REQUEST_SECONDS of its first byte, checked each TICK_SECONDS; an answer must be out within
  ANSWER_SECONDS. A call waiting for a slot (MK1_MAX_WAIT_MS) reads nothing: none of this bounds it.
- Time is kept by the kernel: SO_RCVTIMEO / SO_SNDTIMEO, set once per connection (socket.settimeout
  would add a poll() before every recv and send, and one more GIL hand-off each).
- Bodies: their framing is checked before a byte of them is read (request_parse.py); a refused
  one is answered here (`Handler._refuse`) and its connection closed.
"""
from __future__ import annotations

import collections
import gc
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from chalice.config import Config
from chalice.local import LocalDevServer, ThreadedHTTPServer, create_local_server

from my_mk1_homework import settings as settings_mod

from chalicelib.cpu import describe as describe_cpu, pin_dispatcher
from chalicelib.edge import views
from chalicelib.edge.answers import error_response
from chalicelib.edge.bounds import (MAX_STALLED, THREAD_KEEP_SECONDS, connection_bounds, raise_descriptor_limit,
                                   threads_ahead)
from chalicelib.edge.gateway import LeanGateway
from chalicelib.edge.handler import Handler
from chalicelib.edge.idle_pool import IdlePool
from chalicelib.edge.threads import ConnectionThreads
from chalicelib.errors import ServiceUnavailable

APP_DIR = Path(__file__).resolve().parents[2]   # dispatcher_app/
log = logging.getLogger("mk1.server")


def _somaxconn(default: int = 4096) -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):   # not Linux: listen() caps the number itself
        return default


def _has_bytes(sock: socket.socket) -> bool:
    """Has the client sent something (or closed: a thread sees the end and closes it)?"""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return True
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:   # reset: a thread's first read fails and closes it
        return True


ACCEPT_BATCH = 64   # connections the accept loop takes per wake-up, at most: shutdown() is seen between


class Server(ThreadedHTTPServer):
    """http.server's threaded server, bounded (module docstring): at most `max_threads` connections
    on threads, the accept loop answering one more 503 itself; waiting connections in `idle`."""
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog: connections the kernel completes before the accept loop takes them. Full,
    # it drops the next SYN, which the client sends again 1 s later (then 3 s): http.server's 256
    # put a second into calls of a burst. The kernel caps it at net.core.somaxconn.
    request_queue_size = _somaxconn()

    def __init__(self, address, handler_cls) -> None:
        super().__init__(address, handler_cls)
        self.socket.setblocking(False)   # the accept loop takes what is there, then waits (below)
        self.max_threads, idle_limit = connection_bounds()
        # One token per thread a connection may have (and per stall allowed). A deque's pop and
        # append are atomic under the GIL and take no lock: a semaphore's lock, released by every
        # ending connection's thread, is a convoy when a thousand end at once.
        self._thread_places = collections.deque([None] * self.max_threads)
        self._scarce = self.max_threads // 2   # fewer places left than this: silent ones wait in the pool
        self.stall_places = collections.deque([None] * MAX_STALLED)
        self.idle = IdlePool(self, idle_limit)
        # As many made ahead as connections are served on threads before threads count as scarce,
        # where the system's task limits leave room for them (bounds.threads_ahead).
        self.threads = ConnectionThreads(self.process_request_thread, threads_ahead(self._scarce),
                                         THREAD_KEEP_SECONDS)
        self._turned_away, self._told = 0, 0.0
        self._gateway: LeanGateway | None = None

    def gateway(self, app_object, config) -> LeanGateway:
        """The one gateway every connection's handler uses (gateway.py's docstring says why one)."""
        gateway = self._gateway
        if gateway is None:   # the first connections may each make one; one of them is kept
            gateway = self._gateway = LeanGateway(app_object, config)
        return gateway

    def process_request(self, request, client_address) -> None:
        if len(self._thread_places) < self._scarce and not _has_bytes(request):
            # Threads are scarce and it has sent nothing yet: it waits in the idle pool, on no
            # thread, like a connection between requests, so a burst of silent connections (the
            # listen backlog lets thousands in at once) is not answered 503 at max_threads. With
            # threads to spare it gets one at once: through the pool its request would wait for
            # the pool's thread, which starts threads one at a time as the accept loop does.
            self.idle.add(request, client_address)
            return
        try:
            self._thread_places.pop()
        except IndexError:
            self._turn_away(request)
            return
        try:
            self.threads.serve(request, client_address)
        except BaseException:
            self._thread_places.append(None)
            raise

    def _handle_request_noblock(self) -> None:
        """socketserver's takes one connection per wake-up of the accept loop's select(); in a burst
        the backlog holds many, and each select() costs the loop a GIL hand-off on a busy dispatcher.
        This one takes up to ACCEPT_BATCH before it waits again (figure 4, 1,000 calls sent at
        once, 9 interleaved quick runs: front-door median 4.7 ms against 6.7). Each is still
        handed over before the next is accepted (threads.py)."""
        for _ in range(ACCEPT_BATCH):
            try:
                request, client_address = self.get_request()
            except OSError:   # BlockingIOError: no more waiting
                return
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)
            except BaseException:
                self.shutdown_request(request)
                raise

    def finish_request(self, request, client_address) -> Handler:
        """BaseServer's, returning the handler: it tells whether the connection went to wait."""
        return self.RequestHandlerClass(request, client_address, self)

    def process_request_thread(self, request, client_address) -> None:
        """ThreadingMixIn's, on a kept thread; a connection that went silent between requests goes
        to the idle pool."""
        waited = False
        try:
            waited = self.finish_request(request, client_address).waited
        except Exception:
            self.handle_error(request, client_address)
        finally:
            try:
                if waited:
                    self.idle.add(request, client_address)
                else:
                    self.shutdown_request(request)
            finally:
                self._thread_places.append(None)   # the place comes back whatever happened above

    def _turn_away(self, sock: socket.socket) -> None:
        """503 from the accept loop, which must not wait: the socket is made non-blocking; the
        answer (~300 bytes) fits a new connection's empty send buffer. What the client already
        sent is read first, so the close sends an end of file rather than a reset. The answer is
        mk1's for "cannot serve this call now" (errors.ServiceUnavailable: 503 ServiceException,
        Lambda's shape), which SDKs retry, with a Retry-After."""
        busy = ServiceUnavailable(f"mk1 is serving its limit of {self.max_threads} connections; retry shortly")
        resp = error_response(busy, str(uuid.uuid4()))
        head = "".join(f"{k}: {v}\r\n" for k, v in {**resp.headers, "Content-Length": len(resp.body),
                                                      "Connection": "close", "Retry-After": 1}.items())
        try:
            sock.setblocking(False)
            for _ in range(8):
                if not sock.recv(1 << 16):
                    break
        except OSError:   # nothing (more) to read yet
            pass
        try:
            sock.send(f"HTTP/1.1 503 Service Unavailable\r\n{head}\r\n".encode() + resp.body)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()
        self._turned_away += 1
        now = time.monotonic()
        if now - self._told >= 10:   # one line per 10 s, however many were turned away
            log.warning("%d connection(s) answered 503: %d are on threads, the limit", self._turned_away,
                        self.max_threads)
            self._turned_away, self._told = 0, now

    def handle_error(self, request, client_address) -> None:
        """socketserver's prints a traceback for every error; a client that went away, stalled or
        was cut off (an OSError on its socket) is no fault of ours and logs one line at DEBUG."""
        err = sys.exc_info()[1]
        if isinstance(err, OSError):
            log.debug("connection from %s ended: %r", client_address, err)
        else:
            log.exception("unexpected error serving %s", client_address)

    def server_close(self) -> None:
        super().server_close()
        self.idle.close()
        self.threads.close()


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
        self.dev.server.threads.make_ahead()
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
        cpu = pin_dispatcher(s.MK1_DISPATCHER_CPU, s.MK1_CLUSTER)   # before the threads start
    except ValueError as e:
        log.error("%s", e)
        return 2
    raise_descriptor_limit()
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
    log.info("dispatcher on %s (backend %s), %s", server.url, dispatcher.backend.name, describe_cpu(cpu))
    stop.wait()
    log.info("stopping: draining containers, queues and usage records")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
