"""The front door's bounds: how many connections, how long a request may take, time kept by the kernel.

The design is server.py's docstring; here are its numbers, and the socket I/O that keeps a request's
time (`_Timed`).
"""
from __future__ import annotations

import collections
import logging
import os
import resource
import socket
import struct
import time
from pathlib import Path
from typing import NoReturn

from chalicelib.cgroups import ROOT, controller_dirs

log = logging.getLogger("mk1.server")


# Connections on threads at once. Above the calls that may wait at once in normal use
# (MK1_MAX_QUEUE_DEPTH, 200 a function by default; the queue benchmark sends 1,000 calls at once,
# each on its own connection); idle keep-alive connections do not count (they are in the pool).
MAX_THREADS = 2048
MAX_IDLE = 10_000         # connections in the idle pool: a descriptor each, no thread
MAX_STALLED = 64          # requests silent mid-way for over TICK_SECONDS at once (module docstring)
FD_RESERVE = 256          # descriptors kept for the dispatcher's own use (containers, AWS clients, logs)
# Time limits (module docstring). TICK_SECONDS: long enough that a client making calls back to back
# never leaves its thread; short enough that idle connections free their threads soon. The others:
# generous for a local client on a busy machine, short enough that an abandoned or stalled client
# gives its place back in well under a minute. boto3 reconnects when the server closed an idle one.
TICK_SECONDS = 2          # SO_RCVTIMEO: silence before a waiting connection goes to the pool
IDLE_SECONDS = 30         # in the pool, waiting for a next request; then closed
REQUEST_SECONDS = 30      # a request's header and body, from its first byte (+ up to TICK_SECONDS)
ANSWER_SECONDS = 30       # SO_SNDTIMEO, and an answer's bytes out (6 MB at most) from its first send
LINGER_SECONDS = 2        # after a refusal, reading (and dropping) what the client still sends
THREAD_KEEP_SECONDS = 60  # a connection thread beyond those made ahead, given no connection: then it ends


def _alive(sock: socket.socket) -> bool:
    """False once the client has closed its end. A non-blocking peek needs no select(), which
    fails for descriptors above 1023 — a thousand waiting callers get there."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return True          # nothing to read: still connected
    except OSError:
        return False


def _timeval(seconds: int) -> bytes:
    return struct.pack("ll", seconds, 0)   # struct timeval {tv_sec; tv_usec}


class _Waited(Exception):
    """TICK_SECONDS without the first byte of a next request: the connection goes to the pool."""


class _Timed(socket.SocketIO):
    """One direction of a connection: socket.makefile's SocketIO, timed by the kernel (SO_RCVTIMEO /
    SO_SNDTIMEO; the socket itself stays blocking).

    A recv the kernel times out (EAGAIN, which SocketIO would return as None, "no data yet", and
    the buffered reader would then hand a half-read request on as if whole) is a silence of
    TICK_SECONDS: `waiting` for a request, _Waited; mid-request, a stall (module docstring).
    `deadline` bounds one request's reading, or one answer's writing: unset between them, it
    starts at the first bytes moved and is checked as each call returns, and at each silence.
    """

    def __init__(self, sock: socket.socket, mode: str, allowed: float, stall_places: collections.deque) -> None:
        super().__init__(sock, mode)
        self.allowed = allowed
        self.deadline: float | None = None
        self.waiting = False
        self._stall_places = stall_places
        self._stalled = False

    def readinto(self, b) -> int:
        try:
            while True:
                try:
                    n = self._sock.recv_into(b)
                    break
                except BlockingIOError:   # EAGAIN: TICK_SECONDS without a byte
                    self._silence()
        finally:
            if self._stalled:
                self._stalled = False
                self._stall_places.append(None)
        self._check()
        return n

    def _silence(self) -> None:
        if self.waiting:
            raise _Waited()
        now = time.monotonic()
        if self.deadline is None:   # the request's first bytes came in an earlier recv (pipelined)
            self.deadline = now + self.allowed
        elif now > self.deadline:
            self._expire(f"the client took over {self.allowed:g} s to send its request")
        if not self._stalled:
            try:
                self._stall_places.pop()
            except IndexError:
                self._expire(f"the client stalled mid-request, with {MAX_STALLED} others already stalled")
            self._stalled = True

    def write(self, b) -> int:
        try:
            n = self._sock.send(b)
        except BlockingIOError:   # EAGAIN: SO_SNDTIMEO passed with the client reading nothing
            self._expire(f"the client read none of its answer for {ANSWER_SECONDS} s")
        self._check()
        return n

    def _check(self) -> None:
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.allowed
        elif now > self.deadline:
            self._expire(f"the client took over {self.allowed:g} s to send its request or read its answer")

    def _expire(self, why: str) -> NoReturn:
        # Shut down, so that finish()'s last flush fails at once instead of waiting for the kernel again.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise TimeoutError(why)


def connection_bounds() -> tuple[int, int]:
    """(connections on threads, connections in the idle pool) within the descriptor limit, less
    FD_RESERVE: a server out of descriptors fails accept() at once, again and again, while its
    listening socket stays readable."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = MAX_THREADS + MAX_IDLE if soft == resource.RLIM_INFINITY else max(32, soft - FD_RESERVE)
    threads = min(MAX_THREADS, room // 2)
    return threads, min(MAX_IDLE, room - threads)


def threads_ahead(want: int, cgroup_file: Path = Path("/proc/self/cgroup"),
                  cgroups: Path = ROOT) -> int:
    """How many connection threads to make ahead, of `want`: at most a quarter of the tasks this
    process may still start, where a limit says (its cgroup's pids.max, as a container or a pod
    sets; RLIMIT_NPROC, which counts every task of the user's), so that threads made only in case
    never take the room that calls' threads and containers' processes need."""
    room = []
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:   # root is not held to it
        room.append(soft)
    for _, where in controller_dirs(cgroup_file, "pids", cgroups):   # the same file names in v1 and v2
        try:
            most = (where / "pids.max").read_text().strip()
            now = int((where / "pids.current").read_text())
        except (OSError, ValueError):
            continue
        if most != "max":
            room.append(max(0, int(most) - now))
    return min([want] + [r // 4 for r in room])


def raise_descriptor_limit() -> None:
    """The soft descriptor limit raised to what the bounds need, within the hard limit (1024 soft is
    common): each connection is one. No higher: function processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_THREADS + MAX_IDLE + FD_RESERVE
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):   # macOS caps it below an unlimited hard limit: keep the soft one
            pass
