"""The idle pool: connections waiting between requests, watched by one thread (server.py's docstring)."""
from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING

from chalicelib.edge.bounds import IDLE_SECONDS, TICK_SECONDS

if TYPE_CHECKING:
    from chalicelib.edge.server import Server

log = logging.getLogger("mk1.server")


class IdlePool:
    """Connections waiting for a request, on no thread: one selector, watched by one thread.

    A connection readable again has a request (or its end): on an end of file it is closed here;
    with bytes, the server gives it a thread again (`Server.process_request`: a kept thread, or a
    thread start, about 0.1 ms). One waiting for IDLE_SECONDS is closed. Sockets
    are added from connection threads: epoll and kqueue watch a descriptor from the moment it is
    registered, even during a select() already under way; `_since` is a plain dict, whose list()
    is taken whole under the GIL (the selector's own map iterates in Python).
    """

    def __init__(self, server: "Server", limit: int) -> None:
        self._server, self.limit = server, limit
        self._selector = selectors.DefaultSelector()
        self._since: dict[socket.socket, float] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closing = False
        self._swept = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="http-idle", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._since)

    def add(self, sock: socket.socket, client_address) -> None:
        if not self._closing and len(self._since) < self.limit:
            self._since[sock] = time.monotonic()
            try:
                self._selector.register(sock, selectors.EVENT_READ, client_address)
                return
            except (ValueError, OSError):   # the pool closed meanwhile (the server is stopping)
                self._since.pop(sock, None)
        sock.close()   # a keep-alive client reconnects; a fresh one had sent nothing

    def _run(self) -> None:
        while not self._closing:
            for key, _ in self._selector.select(TICK_SECONDS):
                if key.fileobj is not self._wake_r:
                    self._readable(key.fileobj, key.data)
            if time.monotonic() - self._swept >= 1:
                self._sweep()

    def _readable(self, sock: socket.socket, client_address) -> None:
        try:
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                self._drop(sock, close=False)
                self._server.process_request(sock, client_address)   # a request: back on a thread
                return
        except (BlockingIOError, InterruptedError):   # nothing after all: keep waiting
            return
        except OSError:   # reset by the client
            pass
        except Exception:   # process_request could not start a thread: this loop must go on
            log.exception("a waiting connection could not be served")
        self._drop(sock)   # the client closed it (or it could not be served)

    def _drop(self, sock: socket.socket, close: bool = True) -> None:
        self._since.pop(sock, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        if close:
            sock.close()

    def _sweep(self) -> None:
        self._swept = now = time.monotonic()
        for sock, since in list(self._since.items()):
            if now - since > IDLE_SECONDS:
                self._drop(sock)

    def close(self) -> None:
        self._closing = True
        self._wake_w.send(b"x")
        self._thread.join(TICK_SECONDS + 1)
        for sock in list(self._since):
            self._drop(sock)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
