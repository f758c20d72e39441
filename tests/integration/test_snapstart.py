"""SnapStart on the process backend: init once at publish, each cold start a restore.

AWS's pages this matches:
- SnapStart for published versions, ApplyOn/OptimizationStatus, Python 3.12+:
  https://docs.aws.amazon.com/lambda/latest/dg/snapstart.html
- Runtime hooks (snapshot_restore_py: before-snapshot in reverse order of registration, after-restore
  in order): https://docs.aws.amazon.com/lambda/latest/dg/snapstart-runtime-hooks-python.html
- REPORT carries Restore Duration and Billed Restore Duration, not Init Duration; INIT_REPORT has the
  init; AWS_LAMBDA_LOG_GROUP_NAME / AWS_LAMBDA_LOG_STREAM_NAME are not set:
  https://docs.aws.amazon.com/lambda/latest/dg/snapstart-monitoring.html
- Uniqueness after restore: https://docs.aws.amazon.com/lambda/latest/dg/snapstart-uniqueness.html
- Invoke's SnapStartException (400) and SnapStartTimeoutException (408):
  https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
"""
import base64
import concurrent.futures as cf
import io
import json
import zipfile

import pytest
from botocore.exceptions import ClientError

from helpers import wait_until


@pytest.fixture(autouse=True)
def _python312():
    from chalicelib.execute.runtimes import find_python
    assert find_python("3.12"), "this machine is expected to have python3.12 (pyenv): see docs/OPERATIONS.md"

HANDLER = '''
import os, random, time
from snapshot_restore_py import register_after_restore, register_before_snapshot

LOADED_PID = os.getpid()
INIT_TOKEN = random.random()          # made at init: the same in every restored environment
time.sleep(float(os.environ.get("LOAD_S", "0")))
STATE = {"before": [], "after": []}

@register_before_snapshot
def first_registered():
    STATE["before"].append("first")

@register_before_snapshot
def second_registered():
    STATE["before"].append("second")

@register_after_restore
def restored():
    STATE["after"].append(os.getpid())
    if os.environ.get("FAIL_RESTORE") == "1":
        raise RuntimeError("after-restore hook says no")
    time.sleep(float(os.environ.get("RESTORE_S", "0")))

def handler(event, context):
    time.sleep(float(event.get("hold", 0)))   # calls that overlap need environments of their own
    return {"loaded_pid": LOADED_PID, "pid": os.getpid(), "init_token": INIT_TOKEN,
            "fresh": random.random(), "before": STATE["before"], "after": STATE["after"],
            "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
            "stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
            "version": context.function_version}
'''


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", HANDLER)
    return buf.getvalue()


def _create(system, name: str, env: dict | None = None, snap: bool = True, runtime: str = "python3.12") -> None:
    lam = system.aws("lambda")
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    kw = {"SnapStart": {"ApplyOn": "PublishedVersions"}} if snap else {}
    lam.create_function(FunctionName=name, Runtime=runtime, Handler="app.handler", Role=role,
                        Code={"ZipFile": _zip()}, Environment={"Variables": env or {}}, Timeout=30, **kw)


def _call(client, name: str, hold: float = 0.0) -> tuple[dict, str]:
    r = client.invoke(FunctionName=name, Payload=json.dumps({"hold": hold}).encode(), LogType="Tail")
    return json.loads(r["Payload"].read()), base64.b64decode(r["LogResult"]).decode()


def test_a_published_version_initialises_once_and_each_cold_start_restores(system):
    _create(system, "snappy", {"LOAD_S": "1.5"})
    lam, admin = system.aws("lambda"), system.lambda_client("admin")
    latest = lam.get_function(FunctionName="snappy")["Configuration"]["SnapStart"]
    assert latest == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    version = lam.publish_version(FunctionName="snappy")["Version"]
    got = lam.get_function(FunctionName="snappy", Qualifier=version)["Configuration"]["SnapStart"]
    assert got == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}

    # $LATEST is not SnapStart (as on AWS): a normal init, REPORT with Init Duration.
    body, tail = _call(admin, "snappy")
    assert body["init_type"] == "on-demand" and body["loaded_pid"] == body["pid"]
    assert "Init Duration:" in tail and "Restore Duration" not in tail

    # Three environments of the version at once: each its own process, forked from one init.
    with cf.ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: _call(admin, f"snappy:{version}", hold=0.8), range(3)))
    bodies = [b for b, _ in runs]
    assert len({b["pid"] for b in bodies}) == 3, bodies
    assert len({b["loaded_pid"] for b in bodies}) == 1 and bodies[0]["loaded_pid"] not in {b["pid"] for b in bodies}
    for b, tail in runs:
        assert b["init_type"] == "snap-start" and b["version"] == version
        assert b["before"] == ["second", "first"]            # reverse order of registration
        assert b["after"] == [b["pid"]]                      # ran once, in this environment
        assert b["stream"] is None                           # not set in SnapStart functions
        assert "Restore Duration:" in tail and "Billed Restore Duration:" in tail and "Init Duration" not in tail
    # Init-time state is shared (AWS's uniqueness caveat); random after restore is not.
    assert len({b["init_token"] for b in bodies}) == 1
    assert len({b["fresh"] for b in bodies}) == 3

    # The usage records say restore, not init.
    rows = wait_until(lambda: [r for r in system.usage_records() if r["function"] == "snappy"
                               and r["version"] == version], lambda rs: len(rs) >= 3, timeout=15,
                      what="the version's 3 usage records")
    assert all(r["init_ms"] is None and r["restore_ms"] > 0 for r in rows)


def test_an_after_restore_failure_is_a_snapstart_exception_and_the_next_call_works(system):
    _create(system, "snapfail", {"FAIL_RESTORE": "1"})
    lam, admin = system.aws("lambda"), system.lambda_client("admin")
    version = lam.publish_version(FunctionName="snapfail")["Version"]
    with pytest.raises(ClientError) as e:
        admin.invoke(FunctionName=f"snapfail:{version}", Payload=b"{}")
    err = e.value.response
    assert err["Error"]["Code"] == "SnapStartException" and err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "afterRestore() runtime hook encountered an error" in err["Error"]["Message"]
    assert "after-restore hook says no" in err["Error"]["Message"]
    # An Event call is not lost: it ends in the function's DLQ-or-failed result after its retries,
    # and the dispatcher keeps serving.
    r = admin.invoke(FunctionName=f"snapfail:{version}", InvocationType="Event", Payload=b"{}")
    assert r["StatusCode"] == 202
    assert admin.invoke(FunctionName="snapfail", Payload=b"{}")["StatusCode"] == 200


def test_snapstart_is_refused_for_a_runtime_without_it(system):
    with pytest.raises(ClientError) as e:
        _create(system, "snapold", runtime="python3.11")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "python3.11" in e.value.response["Error"]["Message"]


def test_threads_left_by_init_refuse_the_snapshot_with_a_reason(system):
    lam, admin = system.aws("lambda"), system.lambda_client("admin")
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "import threading, time\n"
                             "threading.Thread(target=time.sleep, args=(3600,), daemon=True, name='poller').start()\n"
                             "def handler(e, c):\n    return 1\n")
    lam.create_function(FunctionName="snapthreads", Runtime="python3.12", Handler="app.handler", Role=role,
                        Code={"ZipFile": buf.getvalue()}, SnapStart={"ApplyOn": "PublishedVersions"})
    version = lam.publish_version(FunctionName="snapthreads")["Version"]
    r = admin.invoke(FunctionName=f"snapthreads:{version}", Payload=b"{}")
    assert r["FunctionError"] == "Unhandled"
    body = json.loads(r["Payload"].read())
    assert "poller" in body["errorMessage"] and "register_after_restore" in body["errorMessage"]


def test_mk1_snapstart_latest_runs_a_builtin_functions_load_once_per_code_version(make_system):
    """MK1_SNAPSTART_LATEST (an mk1 setting, off by default): RuntimeAlpha's load() runs once, in the
    snapshot; three environments at once are three restores of it."""
    s = make_system(MK1_SNAPSTART_LATEST="1", MK1_ALPHA_LOAD_SECONDS="1.0", MK1_ALPHA_GENERATE_SECONDS="0.8")
    admin = s.lambda_client("admin")
    with cf.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: admin.invoke(FunctionName="RuntimeAlpha", Payload=b'{"prompt": "x"}',
                                                       LogType="Tail"), range(3)))
    tails = [base64.b64decode(a["LogResult"]).decode() for a in answers]
    assert all(a["StatusCode"] == 200 and "FunctionError" not in a for a in answers)
    assert all("Restore Duration:" in t for t in tails), tails
    records = wait_until(lambda: [r for r in s.usage_records() if r["function"] == "RuntimeAlpha"],
                         lambda rs: len(rs) >= 3, timeout=15, what="3 usage records")
    assert len({r["container_id"] for r in records}) == 3
    assert all(r["restore_ms"] is not None and r["restore_ms"] < 1000 for r in records)   # load() is not in it
    assert s.log().count("RuntimeAlpha: making the SnapStart snapshot of version $LATEST") == 1
