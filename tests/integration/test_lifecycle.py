"""Container lifecycle through the whole system: reuse, reaping, crashes, timeouts, code updates."""
import base64
import hashlib
import io
import os
import signal
import threading
import zipfile

import pytest

from helpers import wait_until
from my_mk1_homework import FunctionError, InvocationTimeout

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)


def containers(sys_, fn):
    return sys_.status()["functions"][fn]["containers"]


def wait_stopped(sys_, fn):
    wait_until(lambda: containers(sys_, fn), lambda cs: cs == [], what=f"every {fn} container to stop")


def deploy_code(sys_, fn, files: dict[str, str]):
    """Push new code the way any AWS tool would: S3 object + update-function-code."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    data = buf.getvalue()
    key = f"{fn}/{hashlib.sha256(data).hexdigest()}.zip"
    sys_.aws("s3").put_object(Bucket="mk1-code", Key=key, Body=data)
    sys_.aws("lambda").update_function_code(FunctionName=fn, S3Bucket="mk1-code", S3Key=key)
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_round_robin_over_idle_containers(make_system):
    sys_ = make_system(MK1_ALPHA_GENERATE_SECONDS="0.4")
    fn = sys_.function("RuntimeAlpha", "admin")
    # three at once: three containers
    rs = []
    ts = [threading.Thread(target=lambda: rs.append(fn.invoke({"prompt": "x"}))) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert len({r.container for r in rs}) == 3
    # then one at a time: each call goes to the next idle container in turn
    seq = [fn.invoke({"prompt": "y"}).container for _ in range(6)]
    assert len(set(seq[:3])) == 3 and seq[:3] == seq[3:]
    assert all(r.cold is False for r in [fn.invoke({"prompt": "z"})])


def test_idle_containers_are_stopped_after_keepalive(make_system):
    sys_ = make_system(MK1_KEEPALIVE_MS="400")
    fn = sys_.function("RuntimeBeta", "admin")
    first = fn.invoke({"prompt": "x"})
    assert first.cold is True
    wait_stopped(sys_, "RuntimeBeta")
    again = fn.invoke({"prompt": "x"})
    assert again.cold is True and again.container != first.container


def test_keepalive_zero_stops_after_each_invoke(make_system):
    sys_ = make_system(MK1_KEEPALIVE_MS="0")
    fn = sys_.function("RuntimeAlpha", "admin")
    a, b = fn.invoke({"prompt": "x"}), fn.invoke({"prompt": "x"})
    assert a.cold and b.cold and a.container != b.container
    wait_stopped(sys_, "RuntimeAlpha")
    # the peak memory, read after the answer, was read before the kill too: it is in the records
    recs = sys_.usage_records(expect=2)
    assert all(5 < r["max_memory_used_mb"] < r["memory_mb"] for r in recs), recs


def test_killed_container_answers_caller_and_is_replaced(make_system):
    sys_ = make_system(MK1_ALPHA_GENERATE_SECONDS="3")
    fn = sys_.function("RuntimeAlpha", "admin")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn.invoke({"prompt": "doomed"})))
    t.start()
    busy = wait_until(lambda: [c for c in containers(sys_, "RuntimeAlpha") if c["state"] == "busy"],
                      what="a busy RuntimeAlpha container")[0]
    os.kill(int(busy["handle"].removeprefix("pid-")), signal.SIGKILL)
    t.join(20)
    r = out["r"]
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Runtime.ExitError" and "signal: killed" in r.payload["errorMessage"]
    again = fn.invoke({"prompt": "after"})
    assert again.function_error is None and again.container != busy["id"]
    recs = {x["request_id"]: x for x in sys_.usage_records(expect=2)}
    assert recs[r.request_id]["status"] == "crash"


def test_timeout_kills_only_that_container(make_system):
    sys_ = make_system(MK1_FUNCTION_TIMEOUT="1", MK1_BETA_GENERATE_SECONDS="5")
    alpha, beta = sys_.function("RuntimeAlpha", "admin"), sys_.function("RuntimeBeta", "admin")
    warm = alpha.invoke({"prompt": "x"})
    with pytest.raises(InvocationTimeout) as e:
        beta.generate("slow")
    assert "Task timed out after 1.00 seconds" in str(e.value)
    assert alpha.invoke({"prompt": "x"}).container == warm.container
    wait_stopped(sys_, "RuntimeBeta")
    recs = sys_.usage_records(expect=3)
    assert any(x["status"] == "timeout" and x["function"] == "RuntimeBeta" for x in recs)


def test_init_error_is_clear_and_backs_off(make_system):
    sys_ = make_system(MK1_INIT_BACKOFF_MS="3000")
    deploy_code(sys_, "RuntimeAlpha", {"handler.py": "raise RuntimeError('model weights missing')\n"})
    fn = sys_.function("RuntimeAlpha", "admin")
    _wait_new_code(sys_)
    with pytest.raises(FunctionError) as e1:
        fn.generate("x")
    assert "model weights missing" in e1.value.error_message
    before = sys_.status()["functions"]["RuntimeAlpha"]["cold_starts"]
    with pytest.raises(FunctionError):
        fn.generate("x")
    assert sys_.status()["functions"]["RuntimeAlpha"]["cold_starts"] == before  # no restart storm
    recs = sys_.usage_records(expect=2)
    assert any(x["status"] == "init_error" for x in recs)


def _wait_new_code(sys_):
    from infra import package
    shipped = package.code_sha256(package.build_zip("RuntimeAlpha"))
    wait_until(lambda: sys_.status()["functions"]["RuntimeAlpha"]["code_sha256"], lambda sha: sha != shipped,
               what="the dispatcher to see RuntimeAlpha's new code")


def test_code_update_is_picked_up_and_old_containers_drain(make_system):
    sys_ = make_system()
    fn = sys_.function("RuntimeAlpha", "admin")
    old = fn.invoke({"prompt": "x"})
    assert old.payload["response"].startswith("[alpha]")
    deploy_code(sys_, "RuntimeAlpha", {
        "handler.py": "def handler(event, context):\n    return {'response': 'v2 ' + event['prompt']}\n"})
    _wait_new_code(sys_)
    new = fn.invoke({"prompt": "x"})
    assert new.payload == {"response": "v2 x"} and new.cold and new.container != old.container
    wait_until(lambda: [c["id"] for c in containers(sys_, "RuntimeAlpha")], lambda ids: ids == [new.container],
               what="the old container to drain, the new one to stay")


def test_no_container_left_after_dispatcher_shutdown(make_system):
    sys_ = make_system()
    fn = sys_.function("RuntimeAlpha", "admin")
    pids = set()
    for _ in range(2):
        fn.invoke({"prompt": "x"})
    pids = {int(c["handle"].removeprefix("pid-")) for c in containers(sys_, "RuntimeAlpha")}
    assert pids
    sys_.stop_dispatcher()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
