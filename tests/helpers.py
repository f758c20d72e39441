"""Start the real system for tests: moto server, provisioning, dispatcher process."""
from __future__ import annotations

import configparser
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.config import Config

from infra.embedded import command as moto_command, wait_http

ROOT = Path(__file__).resolve().parent.parent

FAST = {"MK1_ALPHA_LOAD_SECONDS": "0.2", "MK1_ALPHA_GENERATE_SECONDS": "0.05",
        "MK1_BETA_LOAD_SECONDS": "0.2", "MK1_BETA_GENERATE_SECONDS": "0.05",
        "MK1_BACKEND": "process", "MK1_CONTROL_REFRESH_MS": "300", "MK1_USAGE_BATCH_MS": "20",
        "MK1_LOGS_BATCH_MS": "20"}


def wait_until(probe: Callable[[], Any], ready: Callable[[Any], bool] = bool, *, timeout: float = 10,
               interval: float = 0.05, what: str = "the condition") -> Any:
    """Poll `probe()` until `ready(value)` holds; return that value. The one way tests wait.

    Wait on something observable (a status field, a usage record, a log line, a process),
    never on a guessed sleep. Without `ready`, the probe's own truthiness decides:

        wait_until(lambda: not s.status()["functions"]["RuntimeBeta"]["containers"],
                   what="RuntimeBeta's containers to stop")
        recs = wait_until(s.usage_records, lambda rs: len(rs) >= 3, what="3 usage records")

    On timeout, an AssertionError names `what` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ready(value):
            return value
        if time.monotonic() >= deadline:
            seen = repr(value)
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: "
                                 f"{seen if len(seen) <= 800 else seen[:800] + '...'}")
        time.sleep(interval)   # the polling period, not a guess at how long anything takes


def is_quiet(status: dict) -> bool:
    """Nothing running, waiting or held, no message in a queue, no usage record on its way."""
    busy = any(f["in_use"] or f["waiting"] or f.get("held") for f in status["functions"].values())
    queued = any(isinstance(q, dict) and any(q.get(k) for k in ("visible", "NotVisible", "Delayed"))
                 for q in status.get("queues", {}).values())
    return not busy and not queued and status["recorder"]["backlog"] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dispatcher(env: dict, home: Path, url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.edge.server"], env=env, cwd=ROOT,
                            stdout=(home / "dispatcher.log").open("ab"), stderr=subprocess.STDOUT)
    wait_http(f"{url}/health", 60, proc)
    return proc


def stop_process(proc: subprocess.Popen | None, sig=signal.SIGTERM) -> None:
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Observed:
    """What tests can see of a running dispatcher at `url`."""

    url: str

    def status(self, timeout: float = 10) -> dict:
        """GET /mk1/status: per function in_use, waiting, held, containers (id, state, handle); the
        recorder's backlog, written and failures; the SQS queues' depths."""
        with urllib.request.urlopen(self.url + "/mk1/status", timeout=timeout) as r:
            return json.load(r)

    def wait_quiet(self, timeout: float = 20) -> dict:
        """Until nothing runs, waits or is queued and every usage record is written; the status then.

        A record is promised before its call is answered, so none of an answered call can still
        come. Quiet twice in a row with the same count of written records: the recorder's backlog
        does not count a batch while it is being appended to the usage log.
        """
        written: list[int] = []   # the recorder's count at each quiet reading in a row

        def settled(st: dict) -> bool:
            if not is_quiet(st):
                written.clear()
                return False
            written.append(st["recorder"]["written"])
            return len(written) >= 2 and written[-1] == written[-2]
        return wait_until(self.status, settled, timeout=timeout, interval=0.1,
                          what="the dispatcher to be quiet (nothing running, queued or unrecorded)")


class Peer(Observed):
    """One more dispatcher process on a System's AWS endpoint (cluster mode), home and port its own."""

    def __init__(self, first: "System", name: str):
        self.home = first.home / name
        self.home.mkdir(exist_ok=True)
        shutil.copy(first.home / "credentials", self.home / "credentials")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_dispatcher({**first.env, "MK1_HOME": str(self.home),
                                      "MK1_DISPATCHER_PORT": str(self.port)}, self.home, self.url)

    def stop(self, sig=signal.SIGTERM) -> None:
        stop_process(self.proc, sig)


def operator_env(home: Path) -> dict[str, str]:
    """The environment in which `aws`/`awslocal` sign as the operator of the mk1 whose home this is,
    as the README has them: the credentials file and its operator profile."""
    return {"AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"), "AWS_PROFILE": "operator"}


class System(Observed):
    """moto + provisioning + one dispatcher process, each on its own free port.

    In LocalStack mode (MK1_TEST_AWS_ENDPOINT, set by conftest for `make test-localstack`) the AWS
    endpoint is that shared LocalStack instead of a moto of its own: each System then signs as an
    operator whose access key id is a 12-digit number, which LocalStack takes as the account, so
    every System has an account (and so queues, tables, functions) of its own."""

    def __init__(self, home: Path, **env: str):
        self.home = home
        self.aws_port, self.port = free_port(), free_port()
        self.localstack = os.environ.get("MK1_TEST_AWS_ENDPOINT", "")
        self.env = {**os.environ, **FAST, **env, "MK1_HOME": str(home), "MK1_AWS_PORT": str(self.aws_port),
                    "MK1_DISPATCHER_PORT": str(self.port), "AWS_ENDPOINT_URL": self.localstack,
                    "MK1_LOG_LEVEL": env.get("MK1_LOG_LEVEL", "INFO"), "PYTHONUNBUFFERED": "1"}
        if self.localstack:
            self.env["MK1_EMBEDDED_AWS"] = "never"
        else:
            self.env.pop("AWS_ENDPOINT_URL")
        self.url = f"http://127.0.0.1:{self.port}"
        self.aws_url = self.localstack or f"http://127.0.0.1:{self.aws_port}"
        self.moto: subprocess.Popen | None = None
        self.dispatcher: subprocess.Popen | None = None

    def settings(self):
        from my_mk1_homework import settings
        return settings.load(self.env)

    def start(self) -> "System":
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self.start_moto()
            self.provision()
            self.start_dispatcher()
        except BaseException:
            self.stop()   # a dispatcher that cannot start must not leave its moto server behind
            raise
        return self

    def start_moto(self) -> None:
        if self.localstack:
            self._own_localstack_account()
            return
        # MK1_DISPATCHER_PORT: the function URLs moto names point at this system's dispatcher.
        # MK1_HOME: moto answers only keys signed by the operator in the home's credentials, or IAM users
        # (as `mk1 up` runs it). MK1_AWS_PERSIST only when a test asks: then moto keeps its control plane
        # in the home's journal; otherwise it comes back empty, as a LocalStack without persistence.
        env = {**os.environ, "MK1_DISPATCHER_PORT": str(self.port), "MK1_HOME": str(self.home),
               "MK1_AWS_AUTH": self.env.get("MK1_AWS_AUTH", "1"),
               "MK1_AWS_PERSIST": "1" if self.env.get("MK1_AWS_PERSIST") == "1" else "0"}
        self.moto = subprocess.Popen(moto_command("127.0.0.1", self.aws_port), env=env,
                                     stdout=(self.home / "moto.log").open("ab"), stderr=subprocess.STDOUT)
        wait_http(f"{self.aws_url}/moto-api/", 30, self.moto)

    def _own_localstack_account(self) -> None:
        from infra import operator_key
        path = self.home / "credentials"
        with operator_key.locked(path):
            cfg = operator_key.read(path)
            if operator_key.PROFILE not in cfg:
                account = "".join(random.choice("0123456789") for _ in range(11))
                cfg[operator_key.PROFILE] = {"aws_access_key_id": "1" + account, "aws_secret_access_key": "test",
                                         "region": "us-east-1"}
                operator_key.write(path, cfg)

    def account(self) -> str:
        return self.aws("sts").get_caller_identity()["Account"]

    def provision(self):
        from infra.provision import provision
        return provision(self.settings())

    def start_dispatcher(self) -> None:
        self.dispatcher = start_dispatcher(self.env, self.home, self.url)

    def stop_dispatcher(self, sig=signal.SIGTERM) -> None:
        stop_process(self.dispatcher, sig)

    def crash_and_restart(self) -> None:
        """The dispatcher and the AWS endpoint die at once, hard (SIGKILL), as in a crash; then come
        back as `make up` brings them back."""
        for proc in (self.dispatcher, self.moto):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.start_moto()
        self.provision()
        self.start_dispatcher()

    def stop(self) -> None:
        self.stop_dispatcher()
        if self.moto and self.moto.poll() is None:
            self.moto.terminate()
            try:
                self.moto.wait(20)
            except subprocess.TimeoutExpired:   # a loaded machine at the end of a long session: say so, end it
                print(f"moto (pid {self.moto.pid}) did not stop within 20 s of SIGTERM; killing it", file=sys.stderr)
                self.moto.kill()
                self.moto.wait(10)

    def log(self) -> str:
        return (self.home / "dispatcher.log").read_text(errors="replace")

    # -- clients --
    def keys(self, user: str) -> tuple[str, str]:
        cfg = configparser.ConfigParser()
        cfg.read(self.home / "credentials")
        return cfg[user]["aws_access_key_id"], cfg[user]["aws_secret_access_key"]

    def lambda_client(self, user: str, **cfg):
        akid, secret = self.keys(user)
        return boto3.client("lambda", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=akid,
                            aws_secret_access_key=secret,
                            config=Config(retries={"total_max_attempts": 1}, read_timeout=300,
                                          max_pool_connections=64, **cfg))

    def operator_keys(self) -> tuple[str, str]:   # see operator_env() for a CLI's environment
        from infra import operator_key
        return operator_key.ensure(self.home / "credentials")

    def aws(self, service: str, user: str | None = None):
        """A client of the embedded AWS, signed as the operator (or as `user`)."""
        akid, secret = self.keys(user) if user else self.operator_keys()
        return boto3.client(service, endpoint_url=self.aws_url, region_name="us-east-1",
                            aws_access_key_id=akid, aws_secret_access_key=secret)

    def function(self, name: str, user: str, **kw):
        from my_mk1_homework import Function
        akid, secret = self.keys(user)
        return Function(name, user, access_key_id=akid, secret_access_key=secret, endpoint=self.url, **kw)

    def usage_records(self, expect: int | None = None, timeout: float = 15) -> list[dict]:
        """The usage log's records; with `expect`, once it has at least that many."""
        def read() -> list[dict]:
            path = self.home / "usage.log"
            return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if expect is None:
            return read()
        return wait_until(read, lambda rs: len(rs) >= expect, timeout=timeout, what=f"{expect} usage records")

    def records_for(self, request_ids, timeout: float = 15) -> list[dict]:
        """The usage records of these calls, once each of them has one."""
        ids = set(request_ids)
        return wait_until(lambda: [r for r in self.usage_records() if r["request_id"] in ids],
                          lambda rs: ids <= {r["request_id"] for r in rs}, timeout=timeout,
                          what=f"a usage record for each of {len(ids)} calls")


def peak_concurrency(records) -> int:
    """Most calls running at once, from usage records' start/end (ISO strings sort as times)."""
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = top = 0
    for _, step in events:
        running += step
        top = max(top, running)
    return top


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, theirs, ...), from /proc."""
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(p.name))
    out, todo = set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


def process_environ(pid: int) -> dict[str, str]:
    """A process's environment, from /proc/<pid>/environ; {} once it has ended."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


# A custom runtime that streams: ten chunks 100 ms apart (a function URL's answer with its prelude;
# "chunks" and "gap" in the event, or in a URL's query, change that).
STREAMING_BOOTSTRAP = r'''#!/usr/bin/env python3
import base64, http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read() or b"{}")
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    url = "rawPath" in event
    params = event.get("queryStringParameters") or {}
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{rid}/response")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
    conn.putheader("Content-Type", "application/vnd.awslambda.http-integration-response" if url else "text/plain")
    conn.endheaders()
    def send(data):
        conn.send(b"%x\r\n%s\r\n" % (len(data), data))
    if url:
        send(json.dumps({"statusCode": 207, "headers": {"Content-Type": "text/plain", "X-Streamed": "yes"},
                         "cookies": ["s=1"]}).encode() + b"\0" * 8)
    for i in range(int(event.get("chunks") or params.get("chunks") or 10)):
        send(f"chunk {i} {time.time():.3f}\n".encode())
        time.sleep(float(event.get("gap") or params.get("gap") or 0.1))
    if event.get("fail"):
        body = base64.b64encode(json.dumps({"errorType": "Oops", "errorMessage": "half way"}).encode())
        conn.send(b"0\r\nLambda-Runtime-Function-Error-Type: Oops\r\nLambda-Runtime-Function-Error-Body: " + body + b"\r\n\r\n")
    else:
        conn.send(b"0\r\n\r\n")
    conn.getresponse().read()
'''


def deploy_code(system: "System", name: str, code: str, runtime: str = "python3.11", **config) -> None:
    """A function whose zip holds `code` as app.py (handler app.handler), deployed with the Lambda API
    as a user deploys one; `config`: CreateFunction's other members (Timeout, Environment, ...)."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", code)
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    system.aws("lambda").create_function(FunctionName=name, Runtime=runtime, Role=role, Handler="app.handler",
                                         Code={"ZipFile": buf.getvalue()}, **config)


def deploy_streamer(system, name: str) -> None:
    """A custom-runtime function that streams its answer (STREAMING_BOOTSTRAP)."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, STREAMING_BOOTSTRAP)
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    system.aws("lambda").create_function(FunctionName=name, Runtime="provided.al2023", Handler="none",
                                         Role=role, Code={"ZipFile": buf.getvalue()}, Timeout=30)
