"""The hand-off line: calls granted in order start in order, whichever reserved container asks first."""
import threading

from chalicelib.execute.backends.process import ProcessBackend
from chalicelib.clock import FakeClock
from chalicelib.execute.container import Container, State
from chalicelib.execute.handoff import HandOffLine
from chalicelib.model import FunctionConfig, Invocation

CFG = FunctionConfig("F", "arn", "sha", "h.h", "python3.11", 3, 128, {}, 3)


def _inv(rid: str) -> Invocation:
    return Invocation(rid, b"{}", "arn", "Root=1")


def _reserved(tmp_path, seq: int, line: HandOffLine, clock=None) -> Container:
    c = Container(seq=seq, function=CFG, code_dir=tmp_path, work_root=tmp_path, backend=ProcessBackend(),
                  clock=clock or FakeClock(), line=line)
    with c._cond:
        c._to(State.READY)
    assert c.try_reserve()

    def close() -> None:   # never served: close the sockets without waiting for a serve loop
        for server in c.endpoint._servers:
            server.server_close()
    c.endpoint.stop = close
    return c


def test_pure_line_order_and_leave():
    line = HandOffLine()
    a, b, c = _inv("a"), _inv("b"), _inv("c")
    assert line.put("c1", a, None) and line.put("c2", b, None) and line.put("c3", c, None)
    assert not line.put("c1", _inv("x"), None)          # one reservation per container
    assert line.take("c9") is None                      # not reserved: takes nothing
    assert line.take("c2")[0] is a                      # the first to ask takes the oldest
    assert line.leave("c3")[0] is c                     # a reserved container gone: the youngest is untaken
    assert line.leave("c3") is None and len(line) == 1
    assert line.take("c1")[0] is b and len(line) == 0


def test_the_container_asking_first_takes_the_oldest_call(tmp_path):
    line = HandOffLine()
    slow, fast = _reserved(tmp_path, 1, line), _reserved(tmp_path, 2, line)
    woken = []
    first, second = _inv("first"), _inv("second")
    assert slow.hand(first, lambda: woken.append("first"))    # granted first, bound for the slow one
    assert fast.hand(second, lambda: woken.append("second"))
    got = fast.next_invocation()                              # the fast container asks first ...
    assert got.request_id == "first" and first.taken_by is fast
    fast.flush_answers()                                      # ... it went out: its caller wakes
    assert woken == ["first"]
    assert slow.next_invocation().request_id == "second" and second.taken_by is slow
    slow.flush_answers()
    assert woken == ["first", "second"]
    for c in (slow, fast):
        c.endpoint.stop()


def test_a_reserved_container_that_dies_leaves_its_caller_to_place_the_call(tmp_path):
    line = HandOffLine()
    doomed, other = _reserved(tmp_path, 1, line), _reserved(tmp_path, 2, line)
    woken = threading.Event()
    older, younger = _inv("older"), _inv("younger")
    assert other.hand(older, None)
    assert doomed.hand(younger, woken.set)
    doomed._gone(exit_code=-9)                 # died before asking for work
    assert woken.is_set() and younger.taken_by is None and not younger.done.is_set()
    assert other.next_invocation().request_id == "older"   # the older call keeps its container
    other.endpoint.stop()


def test_a_warm_call_sends_its_event_on_the_parked_next_from_its_own_thread(tmp_path):
    """With no work, the runtime's /next is parked (SENT: its thread goes back to reading) and the
    next call's own thread sends the event on it; a call granted to a parked container goes out from
    the granting thread; a stop answers a parked /next with None (the endpoint's 410)."""
    from chalicelib.execute.runtime_api import SENT
    c = _reserved(tmp_path, 1, HandOffLine())
    sent = []

    def send(out):
        sent.append((out and out.request_id, threading.current_thread().name))

    assert c.next_invocation(send) is SENT and c._parked is not None
    inv = _inv("warm")
    caller = threading.Thread(target=lambda: c.run(inv, timeout_s=5), name="caller")
    caller.start()
    while not sent:
        threading.Event().wait(0.001)
    assert sent == [("warm", "caller")] and c._current is inv and c._parked is None
    assert c.arrived("warm") and c.invocation_response("warm", b'{"ok": 1}')
    caller.join(5)
    assert inv.outcome.status == "success" and c.span(inv) is not None
    assert c.next_invocation(send) is SENT                       # parked again: a grant sends at once
    woken = []
    granted = _inv("granted")
    assert c.hand(granted, lambda: woken.append("granted"))
    assert sent[-1] == ("granted", "MainThread") and woken == ["granted"] and granted.taken_by is c
    assert c.arrived("granted") and c.invocation_response("granted", b"{}")
    c.release(0.0)
    assert c.try_reserve() and c.next_invocation(send) is SENT  # parked again, then stopped
    c.stop()
    assert sent[-1] == (None, "MainThread") and c._parked is None
    c.endpoint.stop()


class _SwitchedOut(FakeClock):
    """Every wall-clock read comes 5 ms late, as when the GIL changes hands just before it."""

    def time(self) -> float:
        self.advance(0.005)
        return super().time()


def test_a_call_span_is_one_clock_reading_so_one_slots_calls_never_overlap(tmp_path):
    """Its wall start is the wall time of its monotonic start, not a second read that a thread switch
    made late: back-to-back calls on one container keep their order in wall time (usage records)."""
    clock = _SwitchedOut()
    c = _reserved(tmp_path, 1, HandOffLine(), clock)
    walls = []
    for rid in ("one", "two"):
        inv = _inv(rid)
        assert c.hand(inv, None) and c.next_invocation().request_id == rid
        clock.advance(0.010)                     # the function runs 10 ms
        assert c.arrived(rid) and c.invocation_response(rid, b"{}")
        started, started_wall, ended = c.span(inv)
        assert started_wall == clock.wall_of(started)
        walls.append((started_wall, clock.wall_of(ended)))
        c.release(clock.monotonic())
        assert c.try_reserve()
    (_, end_one), (start_two, _) = walls
    assert end_one <= start_two
    c.endpoint.stop()
