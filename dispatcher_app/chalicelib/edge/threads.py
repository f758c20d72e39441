"""Connection threads, kept: a connection is served on a thread that served one before, or that was
made ahead when the server started, rather than on a thread started for it.

Starting a thread for each connection cost the dispatcher ~0.1 ms of CPU (clone, a stack, the
thread's set-up and end). In figure 4's burst of 1,000 calls the front door took calls in at
1,600-2,000 a second, and a client sending faster ran ahead of it in the listen backlog.

- Made ahead: `ahead` threads, started in the background once the server serves (its first calls
  do not wait for them): ~65 us of CPU and ~10 KB of memory each (and 8 MB of address space
  reserved for its stack). As many as the system's task limits leave room for (bounds.py's
  `threads_ahead`). A process forked with a preexec_fn pays ~18 us for each thread of the
  dispatcher's: containers' processes are started without one (backends/process.py).
- Let go between connections: a kept thread holds nothing of its last request while it waits
  (handler.py clears the request's thread-locals).
- Kept: a thread whose connection ended waits for the next. Beyond `ahead` waiting, one that gets
  no connection within `keep_s` ends, so a burst's extra threads go when it is over.
- Handed over exactly: each waiting thread has an inbox of its own, and the accept loop puts a
  connection in the inbox of one waiting thread (the last to wait: its stack is warm) or starts a
  thread for it. A connection is never put where no thread will take it.
- Handed over one at a time: the accept loop waits until the thread has taken the connection, as
  `Thread.start` waits until its new thread runs. Without that wait, a client sending faster than
  the front door had hundreds of threads handed a connection at once, all taking turns at the GIL
  (each turn a switch): the dispatcher then spent up to 5 s of CPU on 1,000 calls instead of 1 s.
  The lock waited on is the hand-over's own, sent with the connection: the accept loop and the
  idle pool's thread hand over at once, and one lock per thread let a fast thread take two
  connections before either hander waited, and one of them then wait for good.
"""
from __future__ import annotations

import _thread
import collections
import itertools
import logging
import queue
import threading
from typing import Callable

log = logging.getLogger("mk1.server")

_END = None   # put in an inbox: its thread ends


class ConnectionThreads:
    def __init__(self, serve: Callable[..., None], ahead: int, keep_s: float, name: str = "http-conn") -> None:
        self._serve, self.ahead, self._keep_s, self._name = serve, ahead, keep_s, name
        # Inboxes of the threads waiting for a connection. A deque's append, pop and remove are atomic
        # under the GIL: a hander takes an inbox with no lock of its own.
        self._waiting: collections.deque[queue.SimpleQueue] = collections.deque()
        self._numbers = itertools.count(1)
        self._closed = False

    def waiting(self) -> int:
        return len(self._waiting)

    def make_ahead(self) -> None:
        threading.Thread(target=self._make, args=(self.ahead,), name=f"{self._name}-maker", daemon=True).start()

    def _make(self, n: int) -> None:
        for made in range(max(0, n - len(self._waiting))):
            if self._closed:
                return
            try:
                self._start(None)
            except RuntimeError:   # "can't start new thread": a process or cgroup limit; serve with those made
                log.warning("made %d connection threads ahead of %d: the system allows no more", made, n)
                return

    def serve(self, request, client_address) -> None:
        """Serves the connection on a waiting thread, once that thread has it, or on a new one."""
        taken = _thread.allocate_lock()   # before the pop: nothing may fail between it and the put
        taken.acquire()
        try:
            inbox = self._waiting.pop()
        except IndexError:
            self._start((request, client_address))
            return
        inbox.put((request, client_address, taken))
        taken.acquire()   # released by the thread once it has the connection

    def _start(self, first: tuple | None) -> None:
        threading.Thread(target=self._run, args=(first,), name=f"{self._name}-{next(self._numbers)}",
                         daemon=True).start()

    def _run(self, job: tuple | None) -> None:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        while True:
            if job is not None:
                try:
                    self._serve(*job)
                except Exception:   # serve handles its own; a kept thread outlives any that escapes it
                    log.exception("a connection thread's serve failed")
                job = None   # not held while waiting
            if self._closed:
                return
            self._waiting.append(inbox)
            if self._closed and self._withdraw(inbox):   # close() emptied the deque before this append
                return
            handed = self._next(inbox)
            if handed is _END:
                return
            *job, taken = handed
            handed = None
            taken.release()

    def _next(self, inbox: queue.SimpleQueue) -> tuple | None:
        # One of the first `ahead` to wait waits for good: no wake-ups while the server is idle.
        timeout = None if len(self._waiting) <= self.ahead else self._keep_s
        while True:
            try:
                return inbox.get(timeout=timeout)
            except queue.Empty:
                if len(self._waiting) <= self.ahead:   # those ahead of it ended: it is one of the kept now
                    timeout = None
                    continue
                return _END if self._withdraw(inbox) else inbox.get()

    def _withdraw(self, inbox: queue.SimpleQueue) -> bool:
        """Takes the inbox out of the waiting ones; False if it was taken meanwhile (by a hander,
        whose connection is coming, or by close(), whose end is)."""
        while True:
            try:
                self._waiting.remove(inbox)
                return True
            except ValueError:
                return False
            except IndexError:   # "deque mutated during remove()": not with inboxes (compared by
                continue         # identity, in C, under the GIL), but were it, the inbox may still be there

    def close(self) -> None:
        """Waiting threads end; a thread serving a connection ends when it is done."""
        self._closed = True
        while True:
            try:
                self._waiting.pop().put(_END)
            except IndexError:
                return
