"""The front door's kept connection threads (chalicelib/edge/threads.py), with real threads."""
from __future__ import annotations

import threading
import time

from chalicelib.edge.threads import ConnectionThreads

from helpers import wait_until


class Recorder:
    """serve(): records which thread served which connection; a connection may be held open."""

    def __init__(self) -> None:
        self.served: dict[object, int] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, request, client_address) -> None:
        self.release.wait(10)
        with self.lock:
            assert request not in self.served, f"{request} served twice"
            self.served[request] = threading.get_ident()


def _threads_named(prefix: str) -> int:
    return sum(1 for t in threading.enumerate()
               if t.name.startswith(prefix + "-") and not t.name.endswith("-maker") and t.is_alive())


def test_a_thread_whose_connection_ended_serves_the_next():
    rec = Recorder()
    threads = ConnectionThreads(rec, ahead=0, keep_s=30, name="t-next")
    try:
        threads.serve("a", None)
        wait_until(threads.waiting, lambda n: n == 1, timeout=5, what="the thread to wait for the next")
        threads.serve("b", None)
        wait_until(lambda: len(rec.served), lambda n: n == 2, timeout=5, what="both served")
        assert rec.served["a"] == rec.served["b"]
        assert _threads_named("t-next") == 1
    finally:
        threads.close()


def test_threads_made_ahead_serve_a_burst_without_a_thread_started():
    rec = Recorder()
    rec.release.clear()   # every connection is held: each needs a thread of its own
    threads = ConnectionThreads(rec, ahead=20, keep_s=30, name="t-ahead")
    try:
        threads.make_ahead()
        wait_until(threads.waiting, lambda n: n == 20, timeout=10, what="20 threads made ahead")
        for i in range(20):
            threads.serve(i, None)
        assert threads.waiting() == 0
        rec.release.set()
        wait_until(lambda: len(rec.served), lambda n: n == 20, timeout=10, what="all 20 served")
        assert len(set(rec.served.values())) == 20
        assert _threads_named("t-ahead") == 20   # none started beyond those made ahead
        wait_until(threads.waiting, lambda n: n == 20, timeout=10, what="all 20 back, waiting")
    finally:
        threads.close()


def test_beyond_those_made_ahead_idle_threads_end_after_keep_s():
    rec = Recorder()
    rec.release.clear()
    threads = ConnectionThreads(rec, ahead=2, keep_s=0.2, name="t-keep")
    try:
        for i in range(6):   # none waiting yet: six threads started
            threads.serve(i, None)
        rec.release.set()
        wait_until(lambda: len(rec.served), lambda n: n == 6, timeout=10, what="six served")
        wait_until(lambda: _threads_named("t-keep"), lambda n: n == 2, timeout=10,
                   what="the four beyond those kept ahead to end")
        assert threads.waiting() == 2
        time.sleep(0.5)   # the two kept wait on with no timeout
        assert _threads_named("t-keep") == 2
    finally:
        threads.close()


def test_every_connection_is_served_once_while_threads_time_out_around_it():
    """Three threads hand connections over at once (the accept loop and the idle pool's do), while
    waiting threads time out: a seat taken just as its wait ended still gets its connection served
    (threads.py's _withdraw), each hand-over waits for its own thread, none is served twice
    and none is lost."""
    rec = Recorder()
    threads = ConnectionThreads(rec, ahead=0, keep_s=0.0005, name="t-race")

    def hand(first: int) -> None:
        for i in range(first, 3000, 3):
            threads.serve(i, None)
            if i % 7 == 0:
                time.sleep(0.0005)
    try:
        handers = [threading.Thread(target=hand, args=(k,), daemon=True) for k in range(3)]
        [t.start() for t in handers]
        [t.join(30) for t in handers]
        wait_until(lambda: len(rec.served), lambda n: n == 3000, timeout=30, what="all 3,000 served")
    finally:
        threads.close()


def test_close_ends_the_waiting_threads():
    threads = ConnectionThreads(Recorder(), ahead=5, keep_s=30, name="t-close")
    threads.make_ahead()
    wait_until(threads.waiting, lambda n: n == 5, timeout=10, what="five made ahead")
    threads.close()
    wait_until(lambda: _threads_named("t-close"), lambda n: n == 0, timeout=10, what="all five to end")


def test_a_thread_limit_stops_the_making_ahead_and_the_made_ones_serve(monkeypatch, caplog):
    """Past the process's or its cgroup's thread limit Thread.start raises RuntimeError ("can't
    start new thread"): the maker stops there, says so, and the threads it made serve."""
    started = []
    real_start = threading.Thread.start

    def start_at_most_three(self):
        if self.name.startswith("t-limit-") and self.name != "t-limit-maker":
            if len(started) == 3:
                raise RuntimeError("can't start new thread")
            started.append(self.name)
        real_start(self)
    monkeypatch.setattr(threading.Thread, "start", start_at_most_three)
    rec = Recorder()
    threads = ConnectionThreads(rec, ahead=10, keep_s=30, name="t-limit")
    try:
        with caplog.at_level("WARNING", logger="mk1.server"):
            threads.make_ahead()
            wait_until(lambda: caplog.text, lambda t: "allows no more" in t, timeout=10, what="the maker to stop")
        assert "made 3 connection threads ahead of 10" in caplog.text
        wait_until(threads.waiting, lambda n: n == 3, timeout=10, what="the three made to wait")
        threads.serve("a", None)
        wait_until(lambda: len(rec.served), lambda n: n == 1, timeout=5, what="a served")
    finally:
        threads.close()


def _cgroup(tmp_path, line: str, where: str, most: str, now: int):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cgroup").write_text(line + "\n")
    d = tmp_path / "fs" / where
    d.mkdir(parents=True)
    (d / "pids.max").write_text(most + "\n")
    (d / "pids.current").write_text(f"{now}\n")
    return tmp_path / "cgroup", tmp_path / "fs"


def test_threads_made_ahead_leave_three_quarters_of_a_cgroups_room(tmp_path):
    """A container or a pod may cap its tasks (pids.max): threads made only in case take at most a
    quarter of the room left, so that calls' threads and containers' processes still start."""
    from chalicelib.edge.bounds import threads_ahead
    v2 = _cgroup(tmp_path / "v2", "0::/kubepods/pod1", "kubepods/pod1", "1024", 200)
    assert threads_ahead(1024, *v2) == 206                   # (1024 - 200) // 4
    v1 = _cgroup(tmp_path / "v1", "8:pids:/docker/abc", "pids/docker/abc", "max", 30)
    assert threads_ahead(1024, *v1) == 1024                  # no cap: all of those wanted
    v1_capped = _cgroup(tmp_path / "v1c", "8:pids:/docker/abc", "pids/docker/abc", "4096", 96)
    assert threads_ahead(1024, *v1_capped) == 1000
    assert threads_ahead(1024, tmp_path / "none", tmp_path) == 1024   # no cgroup file: no cap known


def test_a_kept_thread_outlives_an_error_escaping_its_serve(caplog):
    rec = Recorder()

    def serve(request, client_address):
        if request == "boom":
            raise OSError("escaped")
        rec(request, client_address)
    threads = ConnectionThreads(serve, ahead=1, keep_s=30, name="t-boom")
    try:
        threads.make_ahead()
        wait_until(threads.waiting, lambda n: n == 1, timeout=10, what="one made ahead")
        with caplog.at_level("ERROR", logger="mk1.server"):
            threads.serve("boom", None)
            wait_until(threads.waiting, lambda n: n == 1, timeout=10, what="the thread back, waiting")
        assert "serve failed" in caplog.text
        threads.serve("after", None)
        wait_until(lambda: len(rec.served), lambda n: n == 1, timeout=5, what="the next served")
        assert _threads_named("t-boom") == 1   # the same thread: none started
    finally:
        threads.close()
