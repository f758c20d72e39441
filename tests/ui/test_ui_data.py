"""ui/data.py without a running system: the batch plan, the error messages, the timeline."""
from __future__ import annotations

from ui import data
from ui.data import Answer

from my_mk1_homework.errors import AuthenticationFailed, ConnectionError, FunctionError, PermissionDenied, Throttled


def test_plan_interleaves_and_clamps():
    assert data.plan(2, "a", 1, "b") == [("RuntimeAlpha", "a"), ("RuntimeBeta", "b"), ("RuntimeAlpha", "a")]
    assert data.plan(0, "a", 0, "b") == []
    assert len(data.plan(99, "a", -3, "b")) == data.MAX_CALLS


def test_error_messages_are_one_clear_line():
    url = "http://127.0.0.1:1"
    assert data.describe_error(PermissionDenied("User: arn:... not authorized"), "user1", "RuntimeBeta", url) == (
        data.DENIED, "user1 is not allowed to invoke RuntimeBeta")
    status, text = data.describe_error(Throttled("at its reserved concurrency 3", retry_after=1.0),
                                       "admin", "RuntimeAlpha", url)
    assert status == data.THROTTLED and "429" in text and "RuntimeAlpha" in text
    status, text = data.describe_error(ConnectionError("cannot reach the dispatcher. Start it with `make up`"),
                                       "admin", "RuntimeAlpha", url)
    assert status == data.UNREACHABLE and "make up" in text
    assert data.describe_error(AuthenticationFailed("bad key"), "admin", "RuntimeAlpha", url)[0] == \
        data.UNAUTHENTICATED
    assert data.describe_error(FunctionError("Boom", "it broke"), "admin", "RuntimeAlpha", url) == (
        data.FUNCTION_ERROR, "Boom: it broke")
    assert data.describe_error(ValueError("odd"), "admin", "RuntimeAlpha", url) == (data.ERROR, "ValueError: odd")


def test_max_concurrent():
    assert data.max_concurrent([]) == 0
    assert data.max_concurrent([(0, 1), (1, 2), (2, 3)]) == 1          # back to back: never two at once
    assert data.max_concurrent([(0, 3), (1, 2), (1.5, 4), (3.5, 5)]) == 3
    assert data.max_concurrent([(0, 1), (0, 1), (0, 1), (0.5, 2)]) == 4


def _answer(i, runtime, rid, container, finished, duration_ms, init_ms=None):
    return Answer(i, runtime, "p", submitted=finished - 2, status=data.OK, request_id=rid,
                  duration_ms=duration_ms, init_ms=init_ms, wait_ms=0.0, container=container, finished=finished)


def _record(rid, container, start, end, duration_ms, init_ms=None):
    return {"request_id": rid, "container_id": container, "start": data.iso(start), "end": data.iso(end),
            "duration_ms": duration_ms, "init_ms": init_ms, "status": "success"}


def test_timeline_from_usage_records():
    t = 1_800_000_000.0
    answers = [_answer(0, "RuntimeAlpha", "a", "A-1", t + 1, 300, 400),
               _answer(1, "RuntimeAlpha", "b", "A-2", t + 1, 300),
               _answer(2, "RuntimeBeta", "c", "B-1", t + 1, 300)]
    answers.append(Answer(3, "RuntimeBeta", "p", t, status=data.DENIED))          # never ran: no bar
    records = [_record("a", "A-1", t, t + 0.7, 300, 400), _record("b", "A-2", t + 0.2, t + 0.5, 300),
               _record("c", "B-1", t + 0.6, t + 0.9, 300)]
    spans, source = data.timeline(answers, records)
    assert source == "usage records"
    assert [(s["request_id"], s["phase"]) for s in spans] == [("a", "init (cold start)"), ("a", "run"),
                                                              ("b", "run"), ("c", "run")]
    init, run = spans[0], spans[1]
    assert init["start_s"] == 0 and abs(init["end_s"] - 0.4) < 1e-3 and abs(run["start_s"] - 0.4) < 1e-3
    assert data.max_concurrent_by_runtime(spans) == {"RuntimeAlpha": 2, "RuntimeBeta": 1}


def test_timeline_falls_back_to_client_timestamps():
    t = 1_800_000_000.0
    answers = [_answer(0, "RuntimeAlpha", "a", "A-1", t + 1.0, 500),
               _answer(1, "RuntimeAlpha", "b", "A-2", t + 1.2, 500)]
    spans, source = data.timeline(answers, [])
    assert source.startswith("the answers' timestamps")
    assert data.max_concurrent_by_runtime(spans) == {"RuntimeAlpha": 2}
    spans, source = data.timeline(answers, [_record("a", "A-1", t + 0.5, t + 1.0, 500)])
    assert "the answers' timestamps for 1 of 2" in source


def test_iso_round_trip():
    t = 1_800_000_000.123
    assert data.iso(t).endswith(".123Z") and abs(data.epoch(data.iso(t)) - t) < 1e-3


def test_a_ui_beyond_loopback_asks_for_keys_instead_of_a_profile():
    from ui import data
    assert not data.beyond_loopback("127.0.0.1") and not data.beyond_loopback("localhost")
    assert not data.beyond_loopback("::1") and not data.beyond_loopback("")
    assert data.beyond_loopback("0.0.0.0") and data.beyond_loopback("192.168.1.5")
    typed = data.KeyUser("AKIAEXAMPLE123", "s3cret")
    assert data.keys_of(typed) == ("AKIAEXAMPLE123", "s3cret") and "s3cret" not in str(typed)


def test_a_call_that_waited_has_its_queue_wait_drawn_before_it_runs():
    t = 1_800_000_000.0
    first = _answer(0, "RuntimeAlpha", "a", "A-1", t + 1, 500)
    second = _answer(1, "RuntimeAlpha", "b", "A-1", t + 2, 500)
    second.wait_ms = 500.0       # queued behind "a" (cap 1) for half a second
    records = [_record("a", "A-1", t, t + 0.5, 500), _record("b", "A-1", t + 0.5, t + 1.0, 500)]
    spans, _ = data.timeline([first, second], records)
    assert [(s["request_id"], s["phase"]) for s in spans] == [("a", data.RUN), ("b", data.WAIT), ("b", data.RUN)]
    wait = spans[1]
    assert wait["start_s"] == 0 and abs(wait["end_s"] - 0.5) < 1e-3   # it waited from the first call on
    assert data.max_concurrent_by_runtime(spans) == {"RuntimeAlpha": 1}   # waiting is not running
