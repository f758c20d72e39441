"""A user's own function, deployed the way people deploy Lambda, and its versions and aliases.

Shapes checked against AWS's documentation:
- CreateFunction (zip upload and S3), UpdateFunctionConfiguration, PublishVersion, CreateAlias with
  RoutingConfig.AdditionalVersionWeights, DeleteFunction:
  https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html and siblings.
- Invoke's FunctionName forms (name, name:qualifier, full and partial ARN), Qualifier, the
  X-Amz-Executed-Version answer header, ResourceNotFoundException "Function not found: ARN:QUALIFIER":
  https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
- "The derived qualifier from the function name does not match the specified qualifier."
  (InvalidParameterValueException), as AWS and LocalStack answer it.
- The START line names the version that ran: https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html
"""
import base64
import io
import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from helpers import operator_env, wait_until

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)

ROOT = Path(__file__).resolve().parents[2]

HANDLER = '''
import os, sys
def handler(event, context):
    return {"greeting": os.environ.get("GREETING", "none"), "code": CODE, "python": "%d.%d" % sys.version_info[:2],
            "version": context.function_version, "arn": context.invoked_function_arn}
'''


def _zip(code: str, tag: str = "v1") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", f"CODE = {tag!r}\n" + code)
    return buf.getvalue()


def _aws_cli(system, *args: str) -> dict:
    """The real aws CLI (v1, from the venv) against the embedded AWS."""
    env = {**operator_env(system.home), "AWS_DEFAULT_REGION": "us-east-1",
           "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(system.home)}
    out = subprocess.run([str(Path(sys.executable).parent / "aws"), "--endpoint-url", system.aws_url, *args],
                         env=env, capture_output=True, text=True, timeout=60, cwd=system.home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def _role(system) -> str:
    return system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]


def _call(client, name: str, **kw) -> tuple[dict, dict]:
    r = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail", **kw)
    body = json.loads(r["Payload"].read())
    return body, r


def test_a_zip_deployed_function_with_versions_aliases_config_changes_and_delete(system, tmp_path):
    (tmp_path / "fn.zip").write_bytes(_zip(HANDLER))
    created = _aws_cli(system, "lambda", "create-function", "--function-name", "hello", "--runtime", "python3.11",
                       "--handler", "app.handler", "--role", _role(system), "--zip-file",
                       f"fileb://{tmp_path / 'fn.zip'}", "--environment", "Variables={GREETING=hi}")
    assert created["FunctionName"] == "hello"
    admin = system.lambda_client("admin")
    body, r = _call(admin, "hello")             # at once: no queue, log group or policy made by hand
    assert body["greeting"] == "hi" and body["code"] == "v1" and body["version"] == "$LATEST"
    assert r["ExecutedVersion"] == "$LATEST"
    with pytest.raises(ClientError) as denied:  # user1 keeps RuntimeAlpha only
        system.lambda_client("user1").invoke(FunctionName="hello", Payload=b"{}")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    # a configuration change reaches the next calls (new environments; the old one drains)
    _aws_cli(system, "lambda", "update-function-configuration", "--function-name", "hello",
             "--environment", "Variables={GREETING=hello}")
    wait_until(lambda: _call(admin, "hello")[0]["greeting"], lambda g: g == "hello",
               what="the new environment in the next call")

    v1 = _aws_cli(system, "lambda", "publish-version", "--function-name", "hello")["Version"]
    (tmp_path / "fn2.zip").write_bytes(_zip(HANDLER, "v2"))
    _aws_cli(system, "lambda", "update-function-code", "--function-name", "hello",
             "--zip-file", f"fileb://{tmp_path / 'fn2.zip'}")
    v2 = _aws_cli(system, "lambda", "publish-version", "--function-name", "hello")["Version"]
    assert (v1, v2) == ("1", "2")
    body, r = wait_until(lambda: _call(admin, "hello", Qualifier="1"), lambda br: br[1].get("ExecutedVersion") == "1",
                         what="version 1 to be known to the dispatcher")
    assert body["code"] == "v1" and body["version"] == "1" and body["arn"].endswith(":function:hello:1")
    assert "START RequestId: " in base64.b64decode(r["LogResult"]).decode() and \
        " Version: 1\n" in base64.b64decode(r["LogResult"]).decode()

    # every name form AWS accepts
    account = system.account()   # looked up: moto's and LocalStack's differ
    arn = f"arn:aws:lambda:us-east-1:{account}:function:hello"
    for name, kw in (("hello:2", {}), (f"{arn}:2", {}), (f"{account}:function:hello:2", {}),
                     ("hello", {"Qualifier": "2"}), (arn, {"Qualifier": "2"})):
        body, r = _call(admin, name, **kw)
        assert (body["code"], r["ExecutedVersion"]) == ("v2", "2"), name
    with pytest.raises(ClientError) as clash:
        admin.invoke(FunctionName="hello:1", Qualifier="2", Payload=b"{}")
    assert clash.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert clash.value.response["Error"]["Message"] == \
        "The derived qualifier from the function name does not match the specified qualifier."
    with pytest.raises(ClientError) as missing:
        admin.invoke(FunctionName="hello", Qualifier="7", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert missing.value.response["Error"]["Message"] == f"Function not found: {arn}:7"

    _aliases_split_calls(system, admin, arn)
    _aws_cli(system, "lambda", "delete-function", "--function-name", "hello")
    wait_until(lambda: _outcome_code(admin, "hello"), lambda c: c == "ResourceNotFoundException",
               what="the deleted function to answer ResourceNotFoundException")
    wait_until(lambda: system.status()["functions"], lambda fns: "hello" not in fns,
               what="the deleted function's containers to stop")


def _aliases_split_calls(system, admin, arn: str) -> None:
    """An alias splitting calls 50/50 between two versions; containers are per version."""
    system.aws("lambda").create_alias(FunctionName="hello", Name="live", FunctionVersion="1",
                                      RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    wait_until(lambda: _outcome_code(admin, "hello:live"), lambda c: c == "ok", what="the alias to be known")
    ran = [_call(admin, "hello", Qualifier="live")[1]["ExecutedVersion"] for _ in range(60)]
    assert set(ran) == {"1", "2"} and 15 <= ran.count("2") <= 45, ran
    body, _ = _call(admin, f"{arn}:live")
    assert body["arn"] == f"{arn}:live"      # invoked_function_arn: the ARN the caller used

    # reserved concurrency is the function's, shared by its versions; containers are per version
    st = system.status()["functions"]["hello"]
    assert {c["version"] for c in st["containers"]} >= {"$LATEST", "1", "2"}


def _outcome_code(client, name: str) -> str:
    try:
        client.invoke(FunctionName=name, Payload=b"{}")
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]


def test_an_s3_deployed_function_runs_at_once(system):
    s3 = system.aws("s3")
    s3.create_bucket(Bucket="user-code")
    s3.put_object(Bucket="user-code", Key="fn.zip", Body=_zip(HANDLER, "from-s3"))
    system.aws("lambda").create_function(FunctionName="from_s3", Runtime="python3.11", Role=_role(system),
                                         Handler="app.handler",
                                         Code={"S3Bucket": "user-code", "S3Key": "fn.zip"})
    body, r = _call(system.lambda_client("admin"), "from_s3")
    assert body["code"] == "from-s3" and "FunctionError" not in r


BOOTSTRAP = '''#!/usr/bin/env python3
"""A custom runtime: the Runtime API by hand (GET next, POST response), as provided.al2023 runs it."""
import json, os, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid, event = r.headers["Lambda-Runtime-Aws-Request-Id"], json.loads(r.read() or b"{}")
    answer = json.dumps({"echo": event, "handler": os.environ["_HANDLER"], "runtime": "custom"}).encode()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=answer, method="POST")).read()
'''


def test_a_custom_runtime_bootstrap_runs(system):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16   # executable, as a custom runtime's bootstrap must be
        z.writestr(info, BOOTSTRAP)
    system.aws("lambda").create_function(FunctionName="custom", Runtime="provided.al2023", Role=_role(system),
                                         Handler="my.handler", Code={"ZipFile": buf.getvalue()})
    body, r = _call(system.lambda_client("admin"), "custom")
    assert body == {"echo": {}, "handler": "my.handler", "runtime": "custom"} and "FunctionError" not in r


def test_a_python312_function_runs_on_python312(system):
    from chalicelib.execute.runtimes import find_python
    assert find_python("3.12"), "this machine is expected to have python3.12 (pyenv): see docs/OPERATIONS.md"
    system.aws("lambda").create_function(FunctionName="py312", Runtime="python3.12", Role=_role(system),
                                         Handler="app.handler", Code={"ZipFile": _zip(HANDLER)}, Timeout=30)
    body, r = _call(system.lambda_client("admin"), "py312")
    assert "FunctionError" not in r, body
    assert body["python"] == "3.12"


def test_a_runtime_the_machine_lacks_fails_clearly(system):
    system.aws("lambda").create_function(FunctionName="py314", Runtime="python3.14", Role=_role(system),
                                         Handler="app.handler", Code={"ZipFile": _zip(HANDLER)})
    r = system.lambda_client("admin").invoke(FunctionName="py314", Payload=b"{}")
    body = json.loads(r["Payload"].read())
    assert r["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.InvalidRuntime"
    assert "python3.14" in body["errorMessage"] and "python3.11" in body["errorMessage"]


def test_versions_in_cluster_mode_queued_calls_run_their_version(make_system):
    """A queued call carries the version it was accepted for: whichever dispatcher of the cluster
    runs it (or an Event call, later) runs that version, not $LATEST."""
    from helpers import Peer
    first = make_system(MK1_CLUSTER="1", MK1_LEASE_MS="2000", MK1_SQS_VISIBILITY_S="3", MK1_MAX_WAIT_MS="60000")
    peer = Peer(first, "b")
    try:
        lam = first.aws("lambda")
        lam.create_function(FunctionName="slow", Runtime="python3.11", Role=_role(first), Handler="app.handler",
                            Code={"ZipFile": _zip("import time\n" + HANDLER.replace("def handler(event, context):",
                                  "def handler(event, context):\n    time.sleep(0.2)"), "v1")}, Timeout=30)
        lam.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=1)
        lam.publish_version(FunctionName="slow")
        lam.update_function_code(FunctionName="slow", ZipFile=_zip(HANDLER, "latest"))
        clients = [first.lambda_client("admin"), peer_client(first, peer)]
        out, lock = [], threading.Lock()

        def call(i):
            body, r = _call(clients[i % 2], "slow", Qualifier="1")
            with lock:
                out.append((body["code"], r["ExecutedVersion"]))
        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert out == [("v1", "1")] * 6
        rid = clients[1].invoke(FunctionName="slow:1", InvocationType="Event", Payload=b"{}")["ResponseMetadata"][
            "HTTPHeaders"]["x-amzn-requestid"]
        rec = wait_until(lambda: [x for x in first.usage_records() + peer_records(peer) if x["request_id"] == rid],
                         lambda rs: rs, timeout=30, what="the Event call's usage record")
        assert rec[0]["version"] == "1"
    finally:
        peer.stop()


def peer_client(first, peer):
    import boto3
    from botocore.config import Config
    akid, secret = first.keys("admin")
    return boto3.client("lambda", endpoint_url=peer.url, region_name="us-east-1", aws_access_key_id=akid,
                        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}, read_timeout=120))


def peer_records(peer) -> list[dict]:
    path = peer.home / "usage.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
