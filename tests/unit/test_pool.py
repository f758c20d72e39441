"""FunctionPool on the fake backend and a fake clock: warm reuse, cold starts, reaping, draining.

Every call runs synchronously on the test's thread (the fake runtime answers as the event is sent);
time moves only by clock.advance(). backend.settle() waits, bounded, for containers that exited to
be gone (the container's own monitor thread finishes them). The containers' Runtime API endpoints,
which the fake runtime never calls, are stubbed out (NoEndpoint): stopping a real one waits out its
serve loop's 0.2 s poll."""
from __future__ import annotations

import json

import pytest

from chalicelib.assign.pool import FunctionPool
from chalicelib.clock import FakeClock
from chalicelib.execute.backends.fake import Crash, FakeBackend, NoEndpoint
from chalicelib.model import FunctionConfig, Invocation

pytestmark = pytest.mark.timeout(10)   # a wait that never ends fails the test instead of the run

ARN = "arn:aws:lambda:us-east-1:000000000000:function:F"
CFG = FunctionConfig("F", ARN, "sha-1", "app.handler", "python3.11", 3, 128, {}, None)
NEW_CODE = FunctionConfig("F", ARN, "sha-2", "app.handler", "python3.11", 3, 128, {}, None,
                          generation=1)            # read from the control plane after CFG


def _inv(n: int) -> Invocation:
    return Invocation(f"req-{n}", json.dumps({"n": n}).encode(), ARN, f"Root=1-{n}")


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch):
    monkeypatch.setattr("chalicelib.execute.container.RuntimeEndpoint", NoEndpoint)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_pool(tmp_path, clock):
    """make_pool(backend, **pool_kwargs); every pool is shut down after the test."""
    made: list[tuple[FunctionPool, FakeBackend]] = []

    def make(backend: FakeBackend, **kw) -> FunctionPool:
        pool = FunctionPool("F", backend, lambda cfg: tmp_path / cfg.code_sha, tmp_path / "work",
                            clock=clock, **kw)
        made.append((pool, backend))
        return pool
    yield make
    for pool, backend in made:
        # wait_s=0: the pool's wait reads the fake clock, so it would never time out; the fake's
        # settle() is the bounded wait (real time) for the containers' own monitor threads.
        pool.shutdown(wait_s=0)
        backend.settle()


def _states(pool: FunctionPool) -> dict[str, str]:
    return {d["id"]: d["state"] for d in pool.describe()}


def _three_idle(pool: FunctionPool) -> list[str]:
    """Three warm idle containers, in creation order: each new one is started while the earlier
    ones are held busy by a call handed to them (prepare()) and not yet collected."""
    held_first, held_second = _inv(1), _inv(3)
    _, first = pool.run(_inv(0), CFG)
    assert pool.prepare(held_first, CFG)               # the first container, held busy
    _, second = pool.run(_inv(2), CFG)                 # so this starts the second
    assert pool.prepare(held_second, CFG)              # the second, held busy
    _, third = pool.run(_inv(4), CFG)
    pool.run(held_first, CFG)                          # the handed calls collected: all idle
    pool.run(held_second, CFG)
    ids = [first.container_id, second.container_id, third.container_id]
    assert pool.cold_starts == 3 and len(set(ids)) == 3
    assert set(_states(pool).values()) == {"ready"}
    return ids


def test_the_first_call_starts_a_container_cold_and_reports_its_init(make_pool, clock):
    def handler(event, ctx):
        ctx.log(f"handling {event['n']}")
        return {"echo": event["n"], "container": ctx.container_id}
    backend = FakeBackend(handler, init=lambda spec: clock.advance(0.25), clock=clock)
    pool = make_pool(backend)
    inv = _inv(1)
    outcome, info = pool.run(inv, CFG)
    assert outcome.status == "success"
    assert json.loads(outcome.payload) == {"echo": 1, "container": info.container_id}
    assert info.cold and info.init_ms == pytest.approx(250.0) and info.backend == "fake"
    assert pool.cold_starts == 1 and pool.count() == 1 and inv.logs == ["handling 1"]
    assert backend.ran_on() == [info.container_id] and len(backend.started) == 1
    assert _states(pool) == {info.container_id: "ready"}


def test_a_warm_idle_container_is_reused(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend)
    _, cold = pool.run(_inv(1), CFG)
    clock.advance(30)
    outcome, warm = pool.run(_inv(2), CFG)
    assert outcome.status == "success" and not warm.cold and warm.init_ms is None
    assert warm.container_id == cold.container_id
    assert pool.cold_starts == 1 and len(backend.started) == 1
    assert backend.calls_on(cold.container_id) == ["req-1", "req-2"]
    assert pool.describe()[0]["invocations"] == 2


def test_round_robin_over_idle_warm_containers(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend)
    a, b, c = _three_idle(pool)
    before = len(backend.calls)
    took = [pool.run(_inv(10 + i), CFG)[1].container_id for i in range(6)]
    # The second was picked last (its handed call): round robin goes on from there.
    assert took == [c, a, b, c, a, b]
    assert backend.ran_on()[before:] == took and pool.cold_starts == 3


def test_warm_first_concentrates_calls_on_the_most_recently_used(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend, policy="warm-first")
    a, b, c = _three_idle(pool)                         # all idle since t0: ties go to the youngest
    held_c, held_b = _inv(5), _inv(6)
    assert pool.prepare(held_c, CFG) and pool.prepare(held_b, CFG)
    assert {d["id"] for d in pool.describe() if d["state"] == "busy"} == {b, c}
    clock.advance(1)
    pool.run(held_c, CFG)                               # c idle since t0+1
    clock.advance(1)
    pool.run(held_b, CFG)                               # b idle since t0+2: the most recent
    took = [pool.run(_inv(10 + i), CFG)[1].container_id for i in range(4)]
    assert took == [b, b, b, b] and pool.cold_starts == 3


def test_reap_stops_idle_containers_past_keepalive_but_never_a_reserved_one(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend, keepalive_s=10)
    a, b, c = _three_idle(pool)                         # all idle since t0
    clock.advance(4)
    assert pool.run(_inv(5), CFG)[1].container_id == c  # c idle since t0+4
    held = _inv(6)
    assert pool.prepare(held, CFG)                      # a reserved (BUSY), idle since t0
    assert _states(pool)[a] == "busy"
    clock.advance(7)                                    # t0+11: a and b past 10 s, c at 7 s
    assert pool.reap() == [b]
    backend.settle()
    assert _states(pool) == {a: "busy", c: "ready"} and backend.handles[b].exit_code == 0
    assert pool.reap() == []                            # nothing new past the keepalive
    pool.run(held, CFG)                                 # a answered and released: idle from t0+11
    clock.advance(9.5)
    assert pool.reap() == [c]                           # c at 16.5 s; a at 9.5 s stays
    clock.advance(0.5)
    assert pool.reap() == [a]
    backend.settle()
    assert pool.count() == 0 and pool.cold_starts == 3


def test_a_code_change_drains_the_old_containers(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend, keepalive_s=300)
    _, old = pool.run(_inv(1), CFG)
    outcome, new = pool.run(_inv(2), NEW_CODE)         # new code: never on the old container
    assert outcome.status == "success" and new.cold and new.container_id != old.container_id
    assert backend.started[-1].code_dir.name == "sha-2"
    assert pool.reap() == [old.container_id]           # stale code: stopped well inside the keepalive
    backend.settle()
    assert [d["id"] for d in pool.describe()] == [new.container_id]
    assert pool.describe()[0]["code_sha256"] == "sha-2"
    _, again = pool.run(_inv(3), NEW_CODE)
    assert not again.cold and again.container_id == new.container_id and pool.cold_starts == 2


def test_a_late_call_on_the_old_code_does_not_undo_the_drain(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend)
    _, old = pool.run(_inv(1), CFG)
    in_flight = _inv(2)
    assert pool.prepare(in_flight, CFG)                # admitted (and handed) before the update
    _, new = pool.run(_inv(3), NEW_CODE)               # the first call after it
    pool.run(in_flight, CFG)                           # the old call's thread collects it last
    backend.settle()                                   # the old container, drained as the call ended
    assert pool.reap() == [] and [d["id"] for d in pool.describe()] == [new.container_id]


def test_keepalive_zero_stops_the_container_after_each_call(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend, keepalive_s=0)
    infos = [pool.run(_inv(n), CFG)[1] for n in range(3)]
    backend.settle()
    assert all(i.cold for i in infos) and len({i.container_id for i in infos}) == 3
    assert pool.cold_starts == 3 and pool.count() == 0
    assert all(h.exit_code == 0 and h.removed for h in backend.handles.values())


def test_an_init_error_backs_off_before_starting_another_container(make_pool, clock):
    broken = {"yes": True}

    def init(spec):
        if broken["yes"]:
            raise ImportError("No module named 'app'")
    backend = FakeBackend(init=init, clock=clock)
    pool = make_pool(backend, init_backoff_s=2.0)
    first, info = pool.run(_inv(1), CFG)
    assert first.status == "init_error" and first.error_type == "ImportError" and info.cold
    assert json.loads(first.payload)["errorMessage"] == "No module named 'app'"
    backend.settle()
    assert pool.count() == 0 and len(backend.started) == 1 and backend.calls == []

    clock.advance(1.9)                                  # inside the backoff: its last init error
    again, refused = pool.run(_inv(2), CFG)
    assert again.status == "init_error" and again.payload == first.payload
    assert refused.container_id == "" and len(backend.started) == 1 and pool.cold_starts == 1

    clock.advance(0.1)                                  # backoff over: one more try, failing again
    assert pool.run(_inv(3), CFG)[0].status == "init_error" and len(backend.started) == 2
    backend.settle()
    clock.advance(3.9)                                  # the backoff doubled to 4 s
    assert pool.run(_inv(4), CFG)[1].container_id == "" and len(backend.started) == 2

    broken["yes"] = False
    clock.advance(0.1)
    fixed, info = pool.run(_inv(5), CFG)
    assert fixed.status == "success" and info.cold and len(backend.started) == 3
    assert pool.run(_inv(6), CFG)[0].status == "success" and pool.cold_starts == 3


def test_a_function_error_answers_and_keeps_the_container_warm(make_pool, clock):
    def handler(event, ctx):
        if event["n"] == 1:
            raise ValueError("bad input")
        return {"n": event["n"]}
    backend = FakeBackend(handler, clock=clock)
    pool = make_pool(backend)
    failed, first = pool.run(_inv(1), CFG)
    assert failed.status == "function_error" and failed.error_type == "ValueError"
    assert json.loads(failed.payload)["errorMessage"] == "bad input"
    ok, second = pool.run(_inv(2), CFG)
    assert ok.status == "success" and second.container_id == first.container_id and not second.cold


def test_a_crash_answers_an_exit_error_and_the_next_call_starts_a_new_container(make_pool, clock):
    def handler(event, ctx):
        if event["n"] == 2:
            raise Crash(-9)
        return {}
    backend = FakeBackend(handler, clock=clock)
    pool = make_pool(backend)
    _, first = pool.run(_inv(1), CFG)
    crashed, info = pool.run(_inv(2), CFG)             # warm, on the first container
    assert info.container_id == first.container_id
    assert crashed.status == "crash" and crashed.error_type == "Runtime.ExitError"
    assert "signal: killed" in json.loads(crashed.payload)["errorMessage"]
    backend.settle()
    assert pool.count() == 0
    _, after = pool.run(_inv(3), CFG)
    assert after.cold and after.container_id != first.container_id and pool.cold_starts == 2


def test_an_idle_container_that_dies_is_not_used_again(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend)
    _, first = pool.run(_inv(1), CFG)
    backend.crash(first.container_id, code=137)
    backend.settle()
    assert pool.count() == 0
    outcome, info = pool.run(_inv(2), CFG)
    assert outcome.status == "success" and info.cold and info.container_id != first.container_id


def test_a_backend_that_cannot_start_answers_a_start_error(make_pool, clock):
    backend = FakeBackend(clock=clock)
    backend.start_error = OSError("no such runtime")
    pool = make_pool(backend)
    outcome, info = pool.run(_inv(1), CFG)
    assert outcome.status == "init_error" and outcome.error_type == "Runtime.StartError"
    assert pool.count() == 0 and backend.started == []


def test_shutdown_stops_everything(make_pool, clock):
    backend = FakeBackend(clock=clock)
    pool = make_pool(backend)
    _three_idle(pool)
    assert pool.prepare(_inv(9), CFG)                  # one of them busy: stopped all the same
    pool.shutdown(wait_s=5.0)   # returns once every container is gone (the fake clock never runs out)
    assert pool.count() == 0 and pool.describe() == []
    assert len(backend.handles) == 3
    assert all(h.exited and h.removed for h in backend.handles.values())
