"""The fake backend itself: what its handler sees, where its output goes, and that it also runs
behind a real Runtime API endpoint (the one case here that pays the endpoint's 0.2 s stop)."""
from __future__ import annotations

import json

import pytest

from chalicelib.assign.pool import FunctionPool
from chalicelib.clock import FakeClock
from chalicelib.execute.backends.base import ContainerSpec
from chalicelib.execute.backends.fake import Crash, FakeBackend, NoEndpoint
from chalicelib.model import FunctionConfig, Invocation

pytestmark = pytest.mark.timeout(10)

ARN = "arn:aws:lambda:us-east-1:000000000000:function:F"
CFG = FunctionConfig("F", ARN, "sha-1", "app.handler", "python3.11", 3, 256, {"STAGE": "test"}, None)


def _inv(n: int) -> Invocation:
    return Invocation(f"req-{n}", json.dumps({"n": n}).encode(), ARN, f"Root=1-{n}")


def _pool(tmp_path, backend, clock, **kw) -> FunctionPool:
    return FunctionPool("F", backend, lambda cfg: tmp_path, tmp_path / "work", clock=clock, **kw)


def test_the_handler_sees_a_lambda_context_and_its_output_joins_the_call(tmp_path, monkeypatch):
    monkeypatch.setattr("chalicelib.execute.container.RuntimeEndpoint", NoEndpoint)
    clock, init_lines, seen = FakeClock(), [], {}

    def init(spec: ContainerSpec) -> None:
        seen["env"] = spec.env
        spec.on_output("init line")               # outside any call: the pool's on_log

    def handler(event, ctx):
        seen.update(fn=ctx.function_name, mem=ctx.memory_limit_in_mb, arn=ctx.invoked_function_arn,
                    left=ctx.get_remaining_time_in_millis(), rid=ctx.aws_request_id)
        ctx.log("in the call")
        return b"raw bytes pass through"
    backend = FakeBackend(handler, init=init, clock=clock)
    pool = _pool(tmp_path, backend, clock, on_log=lambda fn, cid, line: init_lines.append(line))
    inv = _inv(1)
    outcome, info = pool.run(inv, CFG)
    assert outcome.payload == b"raw bytes pass through" and inv.logs == ["in the call"]
    assert init_lines == ["init line"] and seen["env"]["STAGE"] == "test"
    assert seen["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "F"
    assert (seen["fn"], seen["mem"], seen["arn"], seen["left"], seen["rid"]) == ("F", 256, ARN, 3000, "req-1")
    assert backend.calls[0].event == {"n": 1} and backend.calls[0].status == "success"
    assert info.memory_mb() == 42.0 and pool.describe()[0]["handle"] == "fake-1"
    pool.shutdown(wait_s=0)
    backend.settle()


def test_a_crash_during_init_is_an_exit_error(tmp_path, monkeypatch):
    monkeypatch.setattr("chalicelib.execute.container.RuntimeEndpoint", NoEndpoint)
    clock = FakeClock()

    def init(spec):
        raise Crash(3)
    backend = FakeBackend(init=init, clock=clock)
    pool = _pool(tmp_path, backend, clock)
    outcome, _ = pool.run(_inv(1), CFG)
    assert outcome.status == "crash" and "exit status 3" in json.loads(outcome.payload)["errorMessage"]
    backend.settle()
    assert pool.count() == 0 and backend.calls == []


def test_the_fake_also_runs_behind_a_real_runtime_api_endpoint(tmp_path):
    clock = FakeClock()
    backend = FakeBackend(clock=clock)
    pool = _pool(tmp_path, backend, clock, keepalive_s=5)
    cold = pool.run(_inv(1), CFG)[1]
    warm = pool.run(_inv(2), CFG)[1]
    assert cold.cold and not warm.cold and warm.container_id == cold.container_id
    assert backend.started[0].runtime_api.startswith("127.0.0.1:")
    clock.advance(5)
    assert pool.reap() == [cold.container_id]
    backend.settle()
    assert pool.count() == 0


def test_a_spec_without_its_container_says_how_to_find_it(tmp_path):
    spec = ContainerSpec("F-0001-abc", "F", tmp_path, tmp_path, "app.handler", {}, 128, "127.0.0.1:1")
    with pytest.raises(TypeError, match="host_for"):
        FakeBackend().start(spec)
