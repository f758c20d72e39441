"""Each process killed with sync and Event calls in flight and queued, then brought back as `make up`
brings it back: nothing accepted is lost or run twice, and the cap holds throughout.

One case per fault: the dispatcher, the AWS endpoint, both together (SIGKILL, as in a crash), a
running container (SIGKILL), and a clean stop of both (SIGTERM, as `make down`) followed by a start.
What must hold after each (AWS's own guarantees, where it has them:
https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html — an Event call
is retried on error and may be delivered more than once; mk1 runs each attempt once by request id):

- every Event call ends in exactly one successful run (its usage record), whatever died;
- every sync call that got an answer has exactly one usage record; a sync call whose connection died
  with the dispatcher ran at most once (records no caller asked for are at most those calls);
- never more than the reserved concurrency ran at once (from the records' intervals);
- the system answers a new call afterwards.
"""
import json
import os
import signal
import threading
import time

import pytest

from helpers import deploy_code, wait_until
from relhelp import peak_overlap, records_by_id

CAP = 2
CODE = '''
import time
def handler(event, context):
    time.sleep(0.4)
    return {"n": event.get("n")}
'''


def _deploy(s) -> set[str]:
    """The function, deployed with a cap of CAP; the request ids of the calls that saw it running."""
    deploy_code(s, "matrix", CODE, Timeout=10)
    s.aws("lambda").put_function_concurrency(FunctionName="matrix", ReservedConcurrentExecutions=CAP)
    admin, ids = s.lambda_client("admin"), set()

    def runs() -> bool:
        r = admin.invoke(FunctionName="matrix", Payload=b'{"n": -1}')
        ids.add(r["ResponseMetadata"]["RequestId"])
        return r["StatusCode"] == 200 and "FunctionError" not in r
    wait_until(runs, timeout=20, what="the function running")
    return ids


def _sync_calls(s, n: int) -> tuple[list[threading.Thread], list]:
    answers: list = []

    def call(i: int):
        client = s.lambda_client("admin")
        try:
            r = client.invoke(FunctionName="matrix", Payload=json.dumps({"n": 100 + i}).encode())
            answers.append((r["StatusCode"], r["ResponseMetadata"]["RequestId"], r.get("FunctionError")))
        except Exception as e:   # noqa: BLE001 - a connection that died with the dispatcher
            answers.append((None, None, type(e).__name__))
    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, answers


def _restart_aws(s):
    s.start_moto()
    s.provision()


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _kill_a_running_container(s):
    busy = wait_until(lambda: [c for c in s.status()["functions"]["matrix"]["containers"] if c["state"] == "busy"],
                      timeout=10, interval=0.02, what="a container running a call")
    os.kill(int(busy[0]["handle"][4:]), signal.SIGKILL)


FAULTS = {
    "dispatcher": lambda s: (_kill(s.dispatcher), s.start_dispatcher()),
    "aws": lambda s: (_kill(s.moto), _restart_aws(s)),
    "both": lambda s: s.crash_and_restart(),
    "container": _kill_a_running_container,
    "down-up": lambda s: (s.stop_dispatcher(signal.SIGTERM), s.moto.terminate(), s.moto.wait(20),
                          _restart_aws(s), s.start_dispatcher()),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_with_calls_in_flight_and_queued_loses_nothing(make_system, fault):
    s = make_system(MK1_AWS_PERSIST="1")
    warm_up = _deploy(s)
    admin = s.lambda_client("admin")
    events = [admin.invoke(FunctionName="matrix", InvocationType="Event", Payload=json.dumps({"n": i}).encode())
              ["ResponseMetadata"]["RequestId"] for i in range(6)]
    threads, answers = _sync_calls(s, 5)
    time.sleep(0.5)   # two run, the rest wait (cap 2, 0.4 s each)
    FAULTS[fault](s)

    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a sync call is still waiting 90 s after the fault"
    wait_until(lambda: all(any(r["request_id"] == rid and r["status"] == "success" for r in s.usage_records())
                           for rid in events), timeout=90, what="every Event call's successful run")
    s.wait_quiet(timeout=60)   # nothing left to run or record: no duplicate can come later
    records = [r for r in s.usage_records() if r["function"] == "matrix"]
    count = records_by_id(records)
    successes = records_by_id([r for r in records if r["status"] == "success"])

    assert all(successes[rid] == 1 for rid in events), {rid: successes[rid] for rid in events}
    answered = [rid for status, rid, _ in answers if status is not None]
    assert all(count[rid] == 1 for rid in answered), {rid: count[rid] for rid in answered}
    if fault not in ("dispatcher", "both", "down-up"):   # the dispatcher lived: every caller was answered
        assert len(answered) == len(answers), answers
    unasked = [rid for rid in successes if rid not in set(events) | set(answered) | warm_up]
    assert len(unasked) <= len(answers) - len(answered), (unasked, answers)
    assert peak_overlap([r for r in records if r.get("start") and r.get("end")]) <= CAP
    assert admin.invoke(FunctionName="matrix", Payload=b'{"n": 999}')["StatusCode"] == 200
