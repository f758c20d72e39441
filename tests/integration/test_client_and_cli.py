"""The client classes and the mk1 / aws CLIs against the running system."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import operator_env, wait_until
from my_mk1_homework import ConnectionError, Function, NotFound, PermissionDenied, Throttled

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("user,fn,ok", [("user1", "RuntimeAlpha", True), ("user1", "RuntimeBeta", False),
                                        ("user2", "RuntimeBeta", True), ("user2", "RuntimeAlpha", False),
                                        ("admin", "RuntimeAlpha", True), ("admin", "RuntimeBeta", True)])
def test_generate_map_spawn_per_user(system, user, fn, ok):
    f = system.function(fn, user)
    if not ok:
        with pytest.raises(PermissionDenied, match=f"{user}.*{fn}"):
            f.generate("x")
        with pytest.raises(PermissionDenied):
            f.spawn("x")
        assert all(isinstance(x, PermissionDenied) for x in f.map(["a", "b"]))
        return
    assert f.generate("a b").startswith("[")
    assert f.map(["one", "two", "three"]) == [f.generate(p) for p in ["one", "two", "three"]]
    assert f.spawn("later").result(timeout=30) == f.generate("later")


def test_map_keeps_order_and_reports_items_separately(system):
    f = system.function("RuntimeAlpha", "admin")
    out = f.map(["a b", None, "c d"])  # None is not a string: that item alone fails
    assert out[0] == "[alpha] b a" and out[2] == "[alpha] d c"
    assert out[1].error_type == "InvalidEvent"
    with pytest.raises(Exception):
        f.map(["ok", None], return_exceptions=False)


def test_throttling_surfaces_as_throttled(make_system):
    sys_ = make_system(MK1_ALPHA_GENERATE_SECONDS="0.5", MK1_MAX_QUEUE_DEPTH="0")
    f = sys_.function("RuntimeAlpha", "admin")
    out = f.map(["x"] * 6, max_parallel=6)
    throttled = [x for x in out if isinstance(x, Throttled)]
    assert throttled and throttled[0].retry_after >= 1
    patient = sys_.function("RuntimeAlpha", "admin", retry_throttled=True, max_retries=8)
    assert all(isinstance(x, str) for x in patient.map(["y"] * 5, max_parallel=5))


def test_not_running_gives_connection_error_with_hint(system):
    f = Function("RuntimeAlpha", "admin", access_key_id="x", secret_access_key="y", endpoint="http://127.0.0.1:9")
    with pytest.raises(ConnectionError, match="make up"):
        f.generate("x")
    with pytest.raises(NotFound):
        system.function("NoSuchThing", "admin").generate("x")


def mk1(system, *args, env=None):
    e = {**os.environ, "MK1_HOME": str(system.home), "MK1_ENDPOINT": system.url,
         "AWS_ENDPOINT_URL": system.aws_url, **(env or {})}
    return subprocess.run([str(BIN / "mk1"), *args], capture_output=True, text=True, env=e, cwd=ROOT, timeout=120)


def test_cli_commands(system):
    r = mk1(system, "invoke", "RuntimeAlpha", "hello cli", "--user", "user1")
    assert r.returncode == 0 and r.stdout.strip() == "[alpha] cli hello"
    r = mk1(system, "invoke", "RuntimeBeta", "x", "--user", "admin", "-n", "3", "--parallel")
    assert r.returncode == 0 and r.stdout.count("[beta]") == 3
    r = mk1(system, "invoke", "RuntimeBeta", "x", "--user", "user1")
    assert r.returncode == 1 and "PermissionDenied" in r.stderr
    r = mk1(system, "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["functions"]["RuntimeAlpha"]["reserved_concurrency"] == 3
    r = mk1(system, "status")
    assert r.returncode == 0 and "RuntimeAlpha" in r.stdout
    r = mk1(system, "usage", "report", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["rows"]
    r = mk1(system, "usage", "report", "--json", "--user", "user1")   # admin asks, filtered to user1
    assert r.returncode == 0 and {row["user"] for row in json.loads(r.stdout)["rows"]} == {"user1"}
    r = mk1(system, "usage", "report", "--json", "--as", "user2")     # user2 asks: its own only
    assert r.returncode == 0 and {row["user"] for row in json.loads(r.stdout)["rows"]} <= {"user2"}
    out = system.home / "export.csv"
    r = mk1(system, "usage", "export", "--format", "csv", "-o", str(out))
    assert r.returncode == 0 and out.read_text().startswith("accepted,attempt,backend,billed_ms")
    r = mk1(system, "logs", "RuntimeAlpha")
    assert r.returncode == 0 and "REPORT RequestId:" in r.stdout


def test_cli_bad_input_is_clear(system):
    r = mk1(system, "invoke", "RuntimeAlpha", "x", "--user", "mallory")
    assert r.returncode == 2 and "unknown user 'mallory'" in r.stderr
    r = mk1(system, "invoke", "NoSuch", "x")
    assert r.returncode == 2 and "Function not found" in r.stderr
    r = mk1(system, "status", env={"MK1_ENDPOINT": "http://127.0.0.1:9"})
    assert r.returncode == 2 and "make up" in r.stderr
    r = mk1(system, "frobnicate")
    assert r.returncode == 2
    r = mk1(system, "logs", "NoSuch")
    assert r.returncode == 2 and "unknown function" in r.stderr


def _binary_format_flag():
    """AWS CLI v2 needs --cli-binary-format raw-in-base64-out for a JSON payload; v1 (from PyPI) takes it raw."""
    v = subprocess.run([str(BIN / "aws"), "--version"], capture_output=True, text=True).stdout
    return ["--cli-binary-format", "raw-in-base64-out"] if v.startswith("aws-cli/2") else []


def test_real_aws_cli_invoke_with_generated_profiles(system, tmp_path):
    env = {**os.environ, "AWS_SHARED_CREDENTIALS_FILE": str(system.home / "credentials"),
           "AWS_CONFIG_FILE": "/dev/null"}
    out = tmp_path / "out.json"
    r = subprocess.run([str(BIN / "aws"), "--profile", "user1", "--region", "us-east-1", "--endpoint-url",
                        system.url, "lambda", "invoke", "--function-name", "RuntimeAlpha",
                        *_binary_format_flag(), "--payload", '{"prompt":"hi there"}', str(out)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["StatusCode"] == 200
    assert json.loads(out.read_text())["response"] == "[alpha] there hi"
    r = subprocess.run([str(BIN / "aws"), "--profile", "user1", "--region", "us-east-1", "--endpoint-url",
                        system.url, "lambda", "invoke", "--function-name", "RuntimeBeta",
                        *_binary_format_flag(), "--payload", '{"prompt":"x"}', str(out)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "AccessDeniedException" in r.stderr


def test_awslocal_operator_commands(system):
    env = {**os.environ, "AWS_ENDPOINT_URL": system.aws_url, "AWS_DEFAULT_REGION": "us-east-1",
           **operator_env(system.home), "DISABLE_DEPRECATION_NOTICE": "1",
           "LOCALSTACK_HOST": f"127.0.0.1:{system.aws_port}"}

    def awslocal(*args):
        r = subprocess.run([str(BIN / "awslocal"), *args], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}
    assert {"RuntimeAlpha", "RuntimeBeta"} <= {f["FunctionName"] for f in awslocal("lambda", "list-functions")["Functions"]}
    assert awslocal("lambda", "get-function-concurrency", "--function-name", "RuntimeAlpha")[
        "ReservedConcurrentExecutions"] == 3
    urls = awslocal("sqs", "list-queues")["QueueUrls"]
    q = [u for u in urls if u.endswith("mk1-RuntimeAlpha-queue")][0]
    assert "ApproximateNumberOfMessages" in awslocal("sqs", "get-queue-attributes", "--queue-url", q,
                                                     "--attribute-names", "All")["Attributes"]
    rid = system.function("RuntimeAlpha", "admin").invoke({"prompt": "for the table"}).request_id
    ddb, logs = system.aws("dynamodb"), system.aws("logs")
    wait_until(lambda: ddb.scan(TableName="mk1-usage", FilterExpression="request_id = :r",
                                ExpressionAttributeValues={":r": {"S": rid}})["Items"],
               timeout=30, what="the call's record in the usage table")
    wait_until(lambda: logs.filter_log_events(logGroupName="/aws/lambda/RuntimeAlpha",
                                              filterPattern=f'"REPORT RequestId: {rid}"')["events"],
               what="the call's REPORT line in CloudWatch Logs")
    assert awslocal("dynamodb", "scan", "--table-name", "mk1-usage")["Count"] >= 1
    assert awslocal("logs", "filter-log-events", "--log-group-name", "/aws/lambda/RuntimeAlpha")["events"]
    assert {"user1", "user2", "admin"} <= {u["UserName"] for u in awslocal("iam", "list-users")["Users"]}


def test_deploy_says_what_changed_and_returns_once_it_is_live(system):
    own = {k: v for k, v in system.env.items() if k.startswith("MK1_")}   # the system's function settings
    r = mk1(system, "deploy", env=own)
    assert r.returncode == 0 and "RuntimeAlpha: code unchanged" in r.stdout and "live:" not in r.stdout, r.stdout
    # someone replaced RuntimeAlpha's code through the AWS API; deploy puts functions/ back, and says so
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return {'response': 'other code'}\n")
    system.aws("lambda").update_function_code(FunctionName="RuntimeAlpha", ZipFile=buf.getvalue())
    wait_until(lambda: system.function("RuntimeAlpha", "admin").invoke({"prompt": "x"}).payload,
               lambda p: p == {"response": "other code"}, what="the replaced code to run")
    r = mk1(system, "deploy", env=own)
    assert r.returncode == 0 and "RuntimeAlpha: code changed" in r.stdout and "RuntimeBeta: code unchanged" in r.stdout
    assert "live: the dispatcher runs the new code of RuntimeAlpha" in r.stdout, r.stdout + r.stderr
    assert system.function("RuntimeAlpha", "admin").invoke({"prompt": "back again"}).payload["response"] == \
        "[alpha] again back"
