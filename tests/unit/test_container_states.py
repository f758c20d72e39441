import pytest

from chalicelib.execute.container import ALLOWED, Container, IllegalTransition, State


def test_every_state_can_reach_stopped_and_stopped_is_final():
    for state in State:
        seen, frontier = {state}, [state]
        while frontier:
            for nxt in ALLOWED[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert State.STOPPED in seen
    assert ALLOWED[State.STOPPED] == set()


def test_reaper_cannot_stop_a_reserved_container(tmp_path):
    from chalicelib.execute.backends.process import ProcessBackend
    from chalicelib.clock import FakeClock
    from chalicelib.model import FunctionConfig
    cfg = FunctionConfig("F", "arn", "sha", "h.h", "python3.11", 3, 128, {}, 3)
    c = Container(seq=1, function=cfg, code_dir=tmp_path, work_root=tmp_path, backend=ProcessBackend(),
                  clock=FakeClock())
    with pytest.raises(IllegalTransition):
        with c._cond:
            c._to(State.STOPPED)   # STARTING may not skip to STOPPED
    with c._cond:
        c._to(State.READY)
    assert c.try_reserve()                 # the pool reserves it ...
    assert not c.try_begin_stop()          # ... so the idle reaper must leave it alone
    assert c.release(now=5.0) and c.try_begin_stop()
    for server in c.endpoint._servers:   # never started: just close the sockets
        server.server_close()


def test_a_timed_out_container_is_killed_once(tmp_path):
    """_fail() kills it on a thread of its own; the pool's stop() after the caller's answer asks
    for the kill again and finds it made (it killed it a second time before)."""
    import threading
    from chalicelib.execute.backends.process import ProcessBackend
    from chalicelib.clock import FakeClock
    from chalicelib.model import FunctionConfig, Invocation, Outcome
    cfg = FunctionConfig("F", "arn", "sha", "h.h", "python3.11", 3, 128, {}, 3)
    c = Container(seq=1, function=cfg, code_dir=tmp_path, work_root=tmp_path, backend=ProcessBackend(),
                  clock=FakeClock())
    killed = threading.Event()
    kills = []

    class Handle:
        def max_memory_mb(self):
            return 30.0

        def kill(self):
            kills.append(1)
            killed.set()

    c.handle = Handle()
    with c._cond:
        c._to(State.READY)
    assert c.try_reserve()
    inv = Invocation("slow", b"{}", "arn", "Root=1")
    with c._cond:
        c._current = inv
    c._fail(inv, Outcome("timeout", b"{}", "Sandbox.Timedout"))
    assert killed.wait(5) and c.state is State.FAILED and inv.outcome.status == "timeout"
    c.stop(wait=False)                     # the pool's _after(): the container did not come back
    threading.Event().wait(0.2)
    assert kills == [1]
    for server in c.endpoint._servers:
        server.server_close()


def test_stop_still_ends_a_failed_container_that_never_got_a_process(tmp_path):
    """A call that timed out before the backend handed back a process leaves the container FAILED with
    no handle: nothing is killing it, so stop() ends it itself (_gone)."""
    from chalicelib.execute.backends.process import ProcessBackend
    from chalicelib.clock import FakeClock
    from chalicelib.model import FunctionConfig, Invocation, Outcome
    cfg = FunctionConfig("F", "arn", "sha", "h.h", "python3.11", 3, 128, {}, 3)
    gone = []
    c = Container(seq=1, function=cfg, code_dir=tmp_path, work_root=tmp_path, backend=ProcessBackend(),
                  clock=FakeClock(), on_gone=gone.append)

    def close() -> None:   # never served: close the sockets without waiting for a serve loop
        for server in c.endpoint._servers:
            server.server_close()
    c.endpoint.stop = close
    inv = Invocation("early", b"{}", "arn", "Root=1")
    with c._cond:
        c._current = inv
    c._fail(inv, Outcome("init_error", b"{}", "Runtime.InitTimeout"))
    assert c.state is State.FAILED and c.handle is None
    c.stop(wait=False)
    assert c.state is State.STOPPED and gone == [c]
