"""Faults under a running system: the AWS endpoint restarted, the dispatcher SIGKILLed with
async calls queued, a client hanging up while queued, the usage log's disk full.

Each uses its own system (make_system) because each breaks something on purpose.
"""
import json
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from chalicelib.record.queries import query
from my_mk1_homework.run_header import run_of
from helpers import wait_until
from relhelp import Background, in_use, records_by_id
from security.rawhttp import invoke_path, is_lambda_error_body, signed_headers, signed_invoke

PROMPT = b'{"prompt": "fault tolerant"}'


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- (a) the embedded AWS restarted under the dispatcher ---------------------------------------

def test_aws_restart_under_the_dispatcher(make_system):
    s = make_system(MK1_ALPHA_GENERATE_SECONDS="1.0")
    admin = s.keys("admin")
    assert all(isinstance(x, str) for x in s.function("RuntimeAlpha", "admin").map(["a", "b", "c"], 3))
    s.usage_records(expect=3)

    s.moto.terminate()
    s.moto.wait(10)
    down_ids, logged = _calls_while_aws_is_down(s, admin)

    # 3. AWS comes back empty (moto keeps state in memory): provision again; the keys change
    s.start_moto()
    s.provision()
    new_admin = s.keys("admin")
    assert new_admin != admin
    wait_until(lambda: _ok(signed_invoke(s.url, new_admin, "RuntimeAlpha", PROMPT)), timeout=20, interval=0.3,
               what="a call with the new keys")
    rec = s.status()["recorder"]
    assert rec["failures"] > 0 and rec["last_error"], rec
    old = signed_invoke(s.url, admin, "RuntimeAlpha", PROMPT)
    assert old.status == 403 and old.error_type == "UnrecognizedClientException", old
    # a call that queues works again (the SQS queue of record is back)
    fn = s.function("RuntimeAlpha", "admin")
    out = fn.map(["q"] * 5, max_parallel=5)
    assert out == ["[alpha] q"] * 5, out

    # the records written while AWS was down reach the (new) usage table; the backlog drains
    ddb = s.aws("dynamodb")
    wait_until(lambda: {r["request_id"] for r in query(ddb)}, lambda got: set(down_ids) <= got, timeout=30,
               interval=0.3, what="the records written while down to reach the table")
    wait_until(lambda: s.status()["recorder"]["backlog"], lambda n: n == 0, timeout=15,
               what="an empty recorder backlog")
    all_ids = records_by_id(s.usage_records(expect=len(logged) + 6))
    assert all(n == 1 for n in all_ids.values()), all_ids   # nothing written twice to the log


def _calls_while_aws_is_down(s, admin) -> tuple[list[str], list[dict]]:
    """Calls made while the AWS endpoint is down; their request ids and the usage log after them."""
    down_ids = []
    # 1. a warm call with a free slot needs no AWS: it works while the AWS endpoint is down
    t0 = time.monotonic()
    a = signed_invoke(s.url, admin, "RuntimeAlpha", PROMPT, timeout=30)
    assert a.status == 200 and a.json()["response"] == "[alpha] tolerant fault", a
    assert run_of(a.headers)["cold"] == "false" and time.monotonic() - t0 < 5
    down_ids.append(a.headers["x-amzn-requestid"])

    # 2. a call that has to wait needs the SQS queue: a clear error, quickly, not a hang
    busy = Background()
    for _ in range(3):
        busy.start(signed_invoke, s.url, admin, "RuntimeAlpha", PROMPT)
    wait_until(lambda: _gauge(s, 'mk1_running{function="RuntimeAlpha"}'), lambda n: n == 3, timeout=5,
               what="3 calls running")
    t0 = time.monotonic()
    queued = signed_invoke(s.url, admin, "RuntimeAlpha", PROMPT, timeout=60)
    waited = time.monotonic() - t0
    print(f"a call that had to queue while AWS was down: {queued.status} {queued.error_type} after {waited:.2f} s")
    assert queued.status in (429, 503), queued
    assert queued.error_type and is_lambda_error_body(queued.json()), queued
    assert waited < 15, "the caller must not hang while the queue is unreachable"
    done = busy.join(30)
    assert all(r.status == 200 for r in done), done
    down_ids += [r.headers["x-amzn-requestid"] for r in done]

    # the usage log has them at once; the table write fails and is retried, never dropped
    s.records_for(down_ids, timeout=10)
    logged = s.usage_records()
    wait_until(lambda: _gauge(s, "mk1_record_write_failures_total"), lambda n: n > 0, what="a reported write failure")
    assert "writing usage/logs failed" in s.log()
    return down_ids, logged


def test_cloudwatch_logs_recover_after_an_aws_restart(make_system):
    """After the AWS endpoint restarts empty and is provisioned again, the function logs
    (START/END/REPORT) reach CloudWatch Logs again and the recorder stops failing."""
    s = make_system()
    fn = s.function("RuntimeAlpha", "admin")
    before = fn.invoke({"prompt": "before"}).request_id
    s.records_for([before])
    logs = s.aws("logs")
    # the container's log stream exists, with the call's lines, when the AWS endpoint goes away
    _wait_report(logs, before, "the REPORT line of the call before the restart")
    s.moto.terminate()
    s.moto.wait(10)
    s.start_moto()
    s.provision()
    fn = s.function("RuntimeAlpha", "admin")      # new keys
    rid = wait_until(lambda: _ok(signed_invoke(s.url, s.keys("admin"), "RuntimeAlpha", PROMPT)), timeout=20,
                     interval=0.3, what="a call with the new keys").headers["x-amzn-requestid"]
    logs = s.aws("logs")
    _wait_report(logs, rid, "the REPORT line of a call made after the AWS restart to reach CloudWatch Logs")
    f1 = s.status()["recorder"]["failures"]
    # Not a guess: the point is that nothing happens for longer than the recorder's longest retry
    # backoff (5 s), in which a recorder still failing would fail (and count) again.
    time.sleep(6)
    rec = s.status()["recorder"]
    assert rec["failures"] == f1 and rec["backlog"] == 0, rec


def _wait_report(logs, request_id: str, what: str) -> None:
    wait_until(lambda: logs.filter_log_events(logGroupName="/aws/lambda/RuntimeAlpha",
                                              filterPattern=f'"REPORT RequestId: {request_id}"')["events"],
               timeout=15, interval=0.2, what=what)


def _ok(answer):
    return answer if answer.status == 200 else None


def _gauge(system, name: str) -> float:
    with urllib.request.urlopen(system.url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def test_status_and_event_calls_while_aws_is_down(make_system):
    """While the AWS endpoint is down: GET /mk1/status (how an operator sees the outage) answers,
    with the queues' error; an Event call, which cannot be accepted durably, is refused in
    Lambda's shape (503/429), not a 202 that could be lost and not Chalice's bare 500."""
    s = make_system()
    s.moto.terminate()
    s.moto.wait(10)
    problems = []
    try:
        st = s.status(timeout=30)
        assert st["functions"]["RuntimeAlpha"]["reserved_concurrency"] == 3
        assert "error" in st["queues"]["RuntimeAlpha"], st["queues"]
    except urllib.error.HTTPError as e:
        problems.append(f"GET /mk1/status: {e.code} {e.read()[:200]!r}")
    ev = signed_invoke(s.url, s.keys("admin"), "RuntimeAlpha", PROMPT, headers={"X-Amz-Invocation-Type": "Event"},
                       timeout=60)
    if not (ev.status in (429, 503) and ev.error_type and is_lambda_error_body(ev.json())):
        problems.append(f"Event call: {ev!r}")
    assert not problems, problems


# -- (b) the dispatcher SIGKILLed with async (Event) calls queued -------------------------------

def test_dispatcher_sigkill_with_event_calls_queued(make_system):
    s = make_system(MK1_ALPHA_GENERATE_SECONDS="0.8")
    admin = s.keys("admin")
    ids = []
    for i in range(10):
        a = signed_invoke(s.url, admin, "RuntimeAlpha", json.dumps({"prompt": f"event {i}"}).encode(),
                          headers={"X-Amz-Invocation-Type": "Event"})
        assert a.status == 202, a
        ids.append(a.headers["x-amzn-requestid"])
    pids = [int(c["handle"][4:]) for c in s.status()["functions"]["RuntimeAlpha"]["containers"]]
    s.stop_dispatcher(signal.SIGKILL)
    killed_at = _iso_now()
    before = s.usage_records()
    finished_before = {r["request_id"] for r in before}
    # the containers of the killed dispatcher are orphans now; the new one removes them on start
    t0 = time.monotonic()
    s.start_dispatcher()
    s.records_for(ids, timeout=90)   # every accepted Event call ran after the restart
    recovered = time.monotonic() - t0
    s.wait_quiet(timeout=60)   # queue empty, nothing running, every record written: no duplicate can come later
    recs = s.usage_records()
    count = records_by_id(recs)
    after = [r for r in recs if r["start"] >= killed_at]
    print(f"SIGKILL with 10 Event calls accepted: {len(finished_before)} had finished before the kill; "
          f"all ran within {recovered:.1f} s of the restart; runs per call {sorted(count.values())}")
    assert set(count) == set(ids)
    assert all(r["status"] == "success" for r in recs), recs
    for rid in ids:
        if rid in finished_before:
            # finished (record written) but killed before its SQS message was deleted: it may run again
            assert count[rid] <= 2, (rid, count[rid])
        else:
            # queued, or running when killed (that run died with its container, no record): exactly once
            assert count[rid] == 1, (rid, count[rid])
    assert len(after) == sum(1 for r in recs if r["request_id"] not in finished_before) + \
        sum(count[r] - 1 for r in finished_before)
    st = s.status()["functions"]["RuntimeAlpha"]
    assert st["in_use"] == 0 and st["waiting"] == 0
    # the killed dispatcher's containers do not linger (their Runtime API went away with it)
    wait_until(lambda: [p for p in pids if _alive(p)], lambda alive: not alive, timeout=15, interval=0.2,
               what="the orphaned containers to exit")
    # the async results are fetchable after the restart
    fn = s.function("RuntimeAlpha", "admin")
    from my_mk1_homework.client import Call
    assert Call(fn, ids[-1]).result(timeout=10) == "[alpha] 9 event"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except OSError:
        return False


# -- (c) a client hanging up while its call waits for a slot ------------------------------------

def _raw_invoke(system, keys, body: bytes) -> socket.socket:
    """A signed Invoke of RuntimeAlpha sent on a raw socket, left open: the test decides how it ends."""
    path = invoke_path("RuntimeAlpha")
    h = signed_headers(system.url, "POST", path, body, keys)
    sock = socket.create_connection(("127.0.0.1", system.port), timeout=5)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    sock.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return sock


def test_client_disconnecting_while_queued_consumes_no_slot(make_system):
    s = make_system(MK1_ALPHA_GENERATE_SECONDS="2.0")
    admin = s.keys("admin")
    fn = s.function("RuntimeAlpha", "admin")
    assert all(isinstance(x, str) for x in fn.map(["w1", "w2", "w3"], 3))   # 3 warm containers
    n0 = len(s.usage_records(expect=3))
    busy = Background()
    for i in range(3):
        busy.start(signed_invoke, s.url, admin, "RuntimeAlpha", json.dumps({"prompt": f"long {i}"}).encode())
    wait_until(lambda: in_use(s, "RuntimeAlpha"), lambda n: n == 3, timeout=5, what="3 calls running")
    # the 4th call, on a raw socket: it queues; then the client goes away
    sock = _raw_invoke(s, admin, b'{"prompt": "ghost"}')
    wait_until(lambda: _waiting(s), lambda n: n == 1, timeout=5, what="the 4th call to wait")
    sock.close()
    wait_until(lambda: _waiting(s), lambda n: n == 0, timeout=3, what="the ghost to be dropped")
    results = busy.join(30)
    assert all(r.status == 200 for r in results), results
    # the 5th call, after the first three: a free slot at once, nothing waits behind the ghost
    t0 = time.monotonic()
    fifth = signed_invoke(s.url, admin, "RuntimeAlpha", b'{"prompt": "fifth"}')
    took = time.monotonic() - t0
    assert fifth.status == 200 and float(run_of(fifth.headers)["wait-ms"]) < 100 and took < 3.5, (fifth, took)
    s.usage_records(expect=n0 + 5)
    # quiet: the ghost's SQS message is deleted and every record written; a 6th record cannot come later
    st = s.wait_quiet(timeout=15)
    recs = s.usage_records()[n0:]
    statuses = sorted(r["status"] for r in recs)
    assert statuses == ["cancelled"] + ["success"] * 4, statuses
    ghost = next(r for r in recs if r["status"] == "cancelled")
    assert ghost["duration_ms"] == 0 and ghost["billed_ms"] == 0 and ghost["container_id"] == ""
    assert sum(r["status"] == "success" and "ghost" in json.dumps(r) for r in recs) == 0
    assert st["functions"]["RuntimeAlpha"]["in_use"] == 0


def _waiting(system) -> int:
    return system.status()["functions"]["RuntimeAlpha"]["waiting"]


def test_client_hanging_up_while_its_call_runs_still_gets_billed(make_system):
    """The usage record and log lines are written after the answer is sent (server.py): an answer
    that cannot be sent, because its client is gone, still leaves exactly one record."""
    s = make_system(MK1_ALPHA_GENERATE_SECONDS="1.0")
    admin = s.keys("admin")
    assert s.function("RuntimeAlpha", "admin").invoke({"prompt": "warm"}).status_code == 200
    n0 = len(s.usage_records(expect=1))
    sock = _raw_invoke(s, admin, b'{"prompt": "gone before its answer"}')
    wait_until(lambda: in_use(s, "RuntimeAlpha"), lambda n: n == 1, timeout=5, what="the call to run")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()   # a reset: writing the answer fails
    recs = s.usage_records(expect=n0 + 1)[n0:]
    s.wait_quiet()   # nothing running, every record written: a second record cannot come later
    assert [r["status"] for r in s.usage_records()[n0:]] == ["success"], recs
    assert recs[0]["duration_ms"] >= 1000
    assert in_use(s, "RuntimeAlpha") == 0
    logs = s.aws("logs")
    group = "/aws/lambda/RuntimeAlpha"
    wait_until(lambda: any(recs[0]["request_id"] in e["message"] and e["message"].startswith("REPORT")
                           for e in logs.filter_log_events(logGroupName=group)["events"]),
               timeout=10, interval=0.2, what="its REPORT line in CloudWatch Logs")
    # the dispatcher carries on
    assert s.function("RuntimeAlpha", "admin").invoke({"prompt": "after"}).status_code == 200


# -- (d) the usage log's disk is full ----------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): needs root / CAP_SYS_ADMIN")
    yield mnt
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(directory) -> int:
    """Fill the filesystem; the bytes written."""
    n = 0
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                n += f.write(b"\0" * 4096)
        except OSError:
            pass
    try:   # the last partial page too
        with open(directory / "filler2", "wb", buffering=0) as f:
            while True:
                n += f.write(b"\0")
    except OSError:
        pass
    return n


def test_usage_log_on_a_full_disk_is_reported_and_nothing_is_lost(make_system, tiny_disk):
    s = make_system(MK1_ALPHA_GENERATE_SECONDS="0.05")
    # usage.log lives on a 64 KB tmpfs (a symlink from MK1_HOME; the recorder opens it by path)
    log_path = s.home / "usage.log"
    if log_path.exists():
        (tiny_disk / "usage.log").write_bytes(log_path.read_bytes())
        log_path.unlink()
    log_path.symlink_to(tiny_disk / "usage.log")
    fn = s.function("RuntimeAlpha", "admin")
    ids = [fn.invoke({"prompt": f"before {i}"}).request_id for i in range(3)]
    s.records_for(ids, timeout=10)   # on the tiny disk
    _fill(tiny_disk)
    log_before = len(s.log())
    # calls still work while their records cannot be written
    ids += [fn.invoke({"prompt": f"full {i} " + "x" * 200}).request_id for i in range(12)]
    rec = wait_until(lambda: s.status()["recorder"], lambda r: r["failures"] > 0,
                     what="the recorder to report the failure")
    assert "No space left on device" in rec["last_error"] or "ENOSPC" in rec["last_error"], rec
    assert rec["backlog"] > 0, rec
    new_log = s.log()[log_before:]
    assert "writing usage/logs failed" in new_log and "No space left on device" in new_log
    with urllib.request.urlopen(s.url + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    fails = [float(line.split()[-1]) for line in metrics.splitlines()
             if line.startswith("mk1_record_write_failures_total")]
    assert fails and fails[0] > 0, metrics
    # space comes back: every record is written, once, and every line of the log is whole
    (tiny_disk / "filler").unlink()
    (tiny_disk / "filler2").unlink(missing_ok=True)
    wait_until(lambda: s.status()["recorder"]["backlog"], lambda n: n == 0, timeout=20, interval=0.2,
               what="the backlog to drain")
    ddb = s.aws("dynamodb")
    wait_until(lambda: {r["request_id"] for r in query(ddb)}, lambda got: set(ids) <= got, timeout=15,
               interval=0.3, what="every record in the table")
    lines = log_path.read_text().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            parsed.append({"torn": line[:120]})
    torn = [p for p in parsed if "torn" in p]
    count = records_by_id([p for p in parsed if "request_id" in p])
    missing = set(ids) - set(count)
    assert not torn, (f"the usage log has {len(torn)} torn line(s) after ENOSPC, {len(missing)} record(s) "
                      f"unreadable: {torn}")
    assert set(count) == set(ids) and all(n == 1 for n in count.values()), count
